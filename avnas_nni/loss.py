"""InfoNCE objective of AV-NAS (paper §4.2, Eq. 36-37).

For an anchor ``a``, its positive ``p`` (another video of the anchor's class) and ``n0`` negatives ``n_i``
(videos of other classes), all taken as the network's tanh outputs ``f``::

    L(a, p, n) = -log( e^{s(a,p)/τ} / (e^{s(a,p)/τ} + Σ_i e^{s(a,n_i)/τ}) )

with ``s`` the cosine similarity of the L2-normalised vectors and ``τ = 0.1``. The paper and the authors'
code have no quantisation term, and neither does this module. The loss is computed as a cross-entropy
over the logits ``[s(a,p), s(a,n_1), …] / τ`` with the positive at index 0, which is the numerically
stable log-sum-exp form of Eq. 36.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["info_nce", "InfoNCELoss"]

logger = logging.getLogger(__name__)


def _check_inputs(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negatives: torch.Tensor,
    tau: float,
    labels: torch.Tensor | None,
) -> None:
    for name, value in (("anchor", anchor), ("positive", positive), ("negatives", negatives)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"info_nce: {name} must be a torch.Tensor, got {type(value).__name__}")
    if anchor.ndim != 2:
        raise ValueError(f"info_nce: anchor must have shape (B, q), got {tuple(anchor.shape)}")
    batch, bits = anchor.shape
    if tuple(positive.shape) != (batch, bits):
        raise ValueError(
            f"info_nce: positive must have the anchor's shape {(batch, bits)}, got {tuple(positive.shape)}"
        )
    if negatives.ndim != 3 or negatives.shape[0] != batch or negatives.shape[2] != bits:
        raise ValueError(
            f"info_nce: negatives must have shape ({batch}, n0, {bits}), got {tuple(negatives.shape)}"
        )
    if not tau > 0:
        raise ValueError(f"info_nce: tau must be > 0, got {tau}")
    if labels is not None and (labels.ndim not in (1, 2) or labels.shape[0] != batch):
        raise ValueError(
            f"info_nce: labels must have shape ({batch},) or ({batch}, C), got {tuple(labels.shape)}"
        )


def info_nce(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negatives: torch.Tensor,
    tau: float = 0.1,
    in_batch_negatives: bool = False,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE loss of Eq. 36, averaged over the batch.

    Parameters
    ----------
    anchor, positive : torch.Tensor
        Shape (B, q): the network's tanh outputs for the anchors and their positives.
    negatives : torch.Tensor
        Shape (B, n0, q): the ``n0`` negatives of every anchor (n0 may be 0 when
        ``in_batch_negatives`` supplies the negatives).
    tau : float
        Temperature τ > 0 (paper: 0.1). Smaller values sharpen the softmax on hard negatives.
    in_batch_negatives : bool
        Off by default (the paper's form). When on, every anchor also uses the positives of the
        **other** anchors of the batch as extra negatives (B - 1 more logits per anchor), SimCLR-style.
        Another anchor's positive may share this anchor's class; pass ``labels`` to drop those.
    labels : torch.Tensor, optional
        Only read with ``in_batch_negatives``: the anchors' classes, shape (B,) of ints or (B, C)
        multi-hot. An in-batch negative whose anchor shares a class with this anchor is left out.

    Returns
    -------
    torch.Tensor
        Scalar loss: the mean over the batch of ``-log softmax(logits)[positive]``.

    Raises
    ------
    ValueError
        On shapes that do not fit together or a non-positive ``tau``.
    """
    _check_inputs(anchor, positive, negatives, tau, labels)
    anchor_unit = F.normalize(anchor, dim=-1)
    positive_unit = F.normalize(positive, dim=-1)
    negatives_unit = F.normalize(negatives, dim=-1)

    positive_sim = (anchor_unit * positive_unit).sum(dim=-1, keepdim=True)  # (B, 1)
    negative_sim = torch.einsum("bq,bnq->bn", anchor_unit, negatives_unit)  # (B, n0)
    logits = [positive_sim, negative_sim]
    if in_batch_negatives:
        batch = anchor.shape[0]
        cross_sim = anchor_unit @ positive_unit.T  # (B, B); the diagonal is each anchor's own positive
        excluded = torch.eye(batch, dtype=torch.bool, device=anchor.device)
        if labels is not None:
            if labels.ndim == 1:
                excluded = excluded | (labels[:, None] == labels[None, :])
            else:
                multi_hot = labels.to(torch.float32)
                excluded = excluded | ((multi_hot @ multi_hot.T) > 0)
        # -inf logits contribute e^{-inf} = 0 to the denominator and get zero gradient.
        logits.append(cross_sim.masked_fill(excluded, float("-inf")))
    scaled = torch.cat(logits, dim=1) / tau
    target = torch.zeros(anchor.shape[0], dtype=torch.long, device=anchor.device)
    return F.cross_entropy(scaled, target)


class InfoNCELoss(nn.Module):
    """Module form of :func:`info_nce`.

    Parameters
    ----------
    tau : float
        Temperature τ > 0 (paper: 0.1).
    in_batch_negatives : bool
        Also use the other anchors' positives as negatives (see :func:`info_nce`); off by default.
    """

    def __init__(self, tau: float = 0.1, in_batch_negatives: bool = False) -> None:
        super().__init__()
        if not tau > 0:
            raise ValueError(f"InfoNCELoss: tau must be > 0, got {tau}")
        self.tau = float(tau)
        self.in_batch_negatives = bool(in_batch_negatives)

    def forward(
        self,
        anchor: torch.Tensor,
        positive: torch.Tensor,
        negatives: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return the batch-mean InfoNCE loss; see :func:`info_nce` for the shapes."""
        return info_nce(anchor, positive, negatives, self.tau, self.in_batch_negatives, labels)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, in_batch_negatives={self.in_batch_negatives}"
