"""AVH, a supervised LSTM + attention video-hashing comparator of the paper's Table 2 (line 10).

Yingxin Wang, Xiushan Nie, Yang Shi, Xin Zhou, Yilong Yin. *Attention-Based Video Hashing for Large-Scale Video
Retrieval.* IEEE Transactions on Cognitive and Developmental Systems 13(3), 2021, 491–502 (reference [46] of the
AV-NAS paper). Neither the AVH paper's text nor any code of its authors was at hand. The sources were:

* the AV-NAS paper: AVH is LSTM-based (Related Work: "LSTM-based approaches, such as SRH, AVH, SSTH and NPH,
  modeled video structures and captured spatio-temporal content"), supervised (Experiments: "the last four are
  supervised ones"), Table 2 line 10: 22M parameters, mAP@100 ActivityNet 0.3576 / 0.4722 and FCVID
  0.3318 / 0.4818 at 32 / 64 bits;
* the abstract of the first author's master's thesis (*Research on Video Hashing Retrieval Based on Attention
  Mechanism*, 2020, which proposes AVH), as far as a public listing shows it: existing video hashing treats
  every frame as equally important, whereas frames differ in importance, so AVH weights the frames by attention;
* the public listing of the same group's patent CN111104555A (*Video hash retrieval method based on attention
  mechanism*; inventors Nie, Yin, Wang): uniformly sampled frames, CNN frame features, training on video pairs,
  similar and dissimilar pairs in the ratio 1 : 1, a loss with a quantisation term.

Every choice below that those sources leave open is marked **Adapted**.

AVH was designed for frame features of the visual stream only. Here it reads the visual features (``(B, m, d)``,
CLIP in the AV-NAS data); **the audio input is ignored**.

Network (per video of m frame features ``x_1 … x_m``)::

    h_t = LSTM(x_t, h_{t−1})                  one LSTM layer of width H = 1024            (Adapted)
    e_t = vᵀ tanh(W_a h_t + b_a)              additive (Bahdanau) attention score per frame (Adapted)
    α   = softmax_t(e)                        the frames' importance weights, Σ_t α_t = 1
    u   = Σ_t α_t h_t                         attention-weighted video representation
    f   = tanh(W_h u + b_h),   b = sign(f)    hash layer: q real outputs in [−1, 1]

Loss (supervised; pairs from the labels, Adapted from the patent's similar / dissimilar pairs): each SPEC §3
triplet row (anchor, a positive of its class, ``n0`` negatives of distinct other classes) gives one similar pair
(anchor, positive) and ``n0`` dissimilar pairs (anchor, negative). With the squared distance
``D(i, j) = ‖f_i − f_j‖²`` (for codes ±1: four times the Hamming distance) the contrastive loss of Deep Supervised
Hashing (DSH; Liu et al., CVPR 2016) plus a quantisation term is::

    L = ½ mean_sim D  +  ½ mean_dis max(0, 4qμ − D)  +  λ mean_i Σ_k (|f_ik| − 1)²

with margin μ = 0.5 of the largest distance (DSH's ``2q``: half the bits differ) and λ = 0.001; the similar
and the dissimilar pairs are averaged separately, so they weigh 1 : 1 whatever ``n0`` (the patent's 1 : 1
ratio; ``n_neg = 1`` in the paper settings gives exactly one pair of each per row).

Reproduced: frame-level attention weights over an LSTM's per-frame states (the frames' unequal importance), an
LSTM as the temporal model, a tanh hash layer signed into codes, supervision from pairs of similar and dissimilar
videos in equal weight, a quantisation term.

Adapted (the paper's exact choices could not be checked):

* Sizes: one unidirectional LSTM layer of width 1024 and an additive attention of width 1024 — chosen because
  they bring the network to the AV-NAS paper's 22M parameters at 4096-d VGG frame features, the features its
  peers of the time (SSTH, SSVH, BTH on FCVID) used: 22.10M at d = 4096, m = 25, q = 64; 8.46M at the AV-NAS
  data's d = 768; 5.52M at the embedded data's d = 48. Whether AVH stacks LSTM layers or runs them both ways,
  and whether its attention acts on the frame features or on the LSTM states, is not known.
* The loss's form: DSH's contrastive loss on squared distances (margin: half the bits) and a squared
  quantisation penalty of weight λ = 0.001. At λ = 0.01 the tiny test runs did not learn (val mAP gain −0.01 to
  +0.01 over the untrained net, seeds 1-5, lr 1e-3 and 3e-3, eps 1e-3; codes saturated towards one code); at
  0.001 they learnt (+0.02 to +0.07 at lr 3e-3, eps 1e-3; +0.05 to +0.09 at eps 1e-8).
* The temperature ``tau`` of the run is not used (AVH's loss has none).
* Settings: AVH's own could not be checked; ``paper_settings`` are stand-ins — Adam lr 1e-4 (ε 1e-8), batch
  128, 100 epochs, ``n_neg = 1`` (one similar and one dissimilar pair per row). The Table 2 row keeps Adam's
  ε = 1e-8 under the quick profile too: at its ε 1e-3 the early gradients (small codes of a 1024-wide LSTM at
  PyTorch's initialisation) barely moved the weights and every video got the same code (embedded data, 64 bits,
  val mAP 0.096 for 3 epochs, loss flat at 64.0). ``sign(0) = +1``
  (:func:`~avnas_nni.codes.sign_codes`); the best val-mAP epoch is kept, as for every row.

Not reproduced: AVH's CNN and its preprocessing (frame sampling, resizing, any reduction of the features'
dimension; the AV-NAS table retrains every method on its own features and splits, as here); AVH's own datasets
and evaluation protocol.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from avnas_nni.methods.base import HashingMethod

__all__ = ["AVH", "FrameAttention", "contrastive_hash_loss"]

logger = logging.getLogger(__name__)


class FrameAttention(nn.Module):
    """Additive attention pooling of per-frame states: ``α = softmax_t(vᵀ tanh(W h_t + b))``, ``u = Σ_t α_t h_t``.

    Parameters
    ----------
    width : int
        Size of one frame's state ``h_t``.
    hidden : int
        Width of the attention's hidden layer ``W``.
    """

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.project = nn.Linear(width, hidden)
        self.score = nn.Linear(hidden, 1, bias=False)  # a bias would shift every score alike: softmax ignores it

    def weights(self, states: torch.Tensor) -> torch.Tensor:
        """The frames' attention weights ``(B, m)`` (each row sums to 1) of states ``(B, m, width)``."""
        return torch.softmax(self.score(torch.tanh(self.project(states))).squeeze(-1), dim=1)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """The attention-weighted sum ``(B, width)`` of the states ``(B, m, width)``."""
        return torch.einsum("bm,bmw->bw", self.weights(states), states)


def contrastive_hash_loss(codes: torch.Tensor, *, margin: float, quantisation_weight: float) -> torch.Tensor:
    """AVH's loss of the codes ``(B, 2 + n0, q)`` of triplet rows (anchor, positive, ``n0`` negatives).

    ``½ mean D(anchor, positive) + ½ mean max(0, 4q · margin − D(anchor, negative)) + quantisation_weight ·
    mean_code Σ_bits (|f| − 1)²`` with ``D(i, j) = ‖f_i − f_j‖²`` (DSH's contrastive loss).

    Raises
    ------
    ValueError
        If ``codes`` is not ``(B, 2 + n0, q)`` with ``n0 ≥ 1``.
    """
    if codes.ndim != 3 or codes.shape[1] < 3:
        raise ValueError(f"AVH: expected codes of triplet rows (B, 2 + n0, q), got {tuple(codes.shape)}")
    distance = (codes[:, :1] - codes[:, 1:]).pow(2).sum(-1)  # (B, 1 + n0): anchor to the others
    similar, dissimilar = distance[:, :1], distance[:, 1:]
    quantisation = (codes.abs() - 1).pow(2).sum(-1).mean()
    beyond = (4 * codes.shape[2] * margin - dissimilar).clamp(min=0)
    return 0.5 * similar.mean() + 0.5 * beyond.mean() + quantisation_weight * quantisation


class AVH(HashingMethod):
    """AVH (Wang et al., IEEE TCDS 2021), visual frames only: see the module docstring for network, loss, sources.

    Parameters
    ----------
    dim : int
        Size d of one visual frame feature (audio is never read).
    length : int
        The most frames m a video may have (25 in the AV-NAS data).
    bits : int
        Length q of the hash code.
    hidden : int
        Width H of the LSTM (1024).
    attention : int
        Width of the attention's hidden layer (1024).
    margin : float
        Margin μ of the dissimilar pairs as a fraction of the largest squared distance 4q, in (0, 1] (0.5: half
        the bits, DSH's 2q).
    quantisation_weight : float
        Weight λ of the quantisation term (0.001).
    """

    name = "avh"
    citation = ("Yingxin Wang, Xiushan Nie, Yang Shi, Xin Zhou, Yilong Yin. Attention-Based Video Hashing for "
                "Large-Scale Video Retrieval. IEEE Transactions on Cognitive and Developmental Systems 13(3), 2021, "
                "491-502.")
    supervised = True
    paper_settings = {"finetune_lr": 1e-4, "finetune_eps": 1e-8, "batch_size": 128, "finetune_epochs": 100,
                      "n_neg": 1}

    def __init__(self, dim: int = 768, length: int = 25, bits: int = 64, hidden: int = 1024, attention: int = 1024,
                 margin: float = 0.5, quantisation_weight: float = 0.001):
        super().__init__()
        sizes = {"dim": dim, "length": length, "bits": bits, "hidden": hidden, "attention": attention}
        wrong = [f"{key}={value!r}" for key, value in sizes.items()
                 if isinstance(value, bool) or not isinstance(value, int) or value < 1]
        if wrong:
            raise ValueError(f"AVH: sizes must be positive integers, got {', '.join(wrong)}")
        if not 0 < margin <= 1:
            raise ValueError(f"AVH: margin must be in (0, 1], got {margin!r}")
        if quantisation_weight < 0:
            raise ValueError(f"AVH: quantisation_weight must be non-negative, got {quantisation_weight!r}")
        self._config = sizes | {"margin": margin, "quantisation_weight": quantisation_weight}
        self.length, self.margin, self.quantisation_weight = length, float(margin), float(quantisation_weight)
        self.lstm = nn.LSTM(dim, hidden, batch_first=True)
        self.attention = FrameAttention(hidden, attention)
        self.hash = nn.Linear(hidden, bits)
        logger.debug("AVH: %s", self._config)

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def frame_states(self, visual: torch.Tensor) -> torch.Tensor:
        """The LSTM's state ``(B, m, H)`` at every frame of videos ``(B, m, d)``."""
        if visual.ndim != 3:
            raise ValueError(f"AVH: expected videos (B, m, d), got {tuple(visual.shape)}")
        if visual.shape[1] > self.length:
            raise ValueError(f"AVH: built for {self.length} frames, got {visual.shape[1]}")
        states, _ = self.lstm(visual)
        return states

    def frame_weights(self, visual: torch.Tensor) -> torch.Tensor:
        """The frames' attention weights ``(B, m)`` of videos ``(B, m, d)`` (each row sums to 1)."""
        return self.attention.weights(self.frame_states(visual))

    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, q)`` in [−1, 1] of the visual frames ``(B, m, d)``; ``audio`` is unused."""
        return torch.tanh(self.hash(self.attention(self.frame_states(visual))))

    def training_loss(self, visual: torch.Tensor, audio: torch.Tensor, *, tau: float = 0.0) -> torch.Tensor:
        """AVH's loss of triplet rows ``visual`` (B, 2 + n0, m, d): anchor, positive, negatives.

        ``tau`` is not used (AVH's loss has no temperature); ``audio`` is not read.
        """
        if visual.ndim != 4 or visual.shape[1] < 3:
            raise ValueError(f"AVH: expected triplet rows (B, 2 + n0, m, d), got {tuple(visual.shape)}")
        batch, k = visual.shape[:2]
        codes = self(visual.flatten(0, 1), audio.flatten(0, 1)).view(batch, k, -1)
        return contrastive_hash_loss(codes, margin=self.margin, quantisation_weight=self.quantisation_weight)
