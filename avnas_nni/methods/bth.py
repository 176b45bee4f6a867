"""BTH, a self-supervised (label-free) video-hashing comparator of the paper's Table 2 (line 4).

Shuyan Li, Xiu Li, Jiwen Lu, Jie Zhou. *Self-Supervised Video Hashing via Bidirectional Transformers.* CVPR
2021, 13549–13558 (reference [27] of the AV-NAS paper). The BTH paper's full text and the authors' repository
(github.com/Lily1994/BTH) were not at hand: this is written from its abstract (a BERT-style bidirectional
Transformer encoder-decoder; a *visual cloze* task, a *similarity reconstruction* task, a *cluster
assignment* task), the AV-NAS paper's account of it (Table 2: 2M parameters), and the public repository of
DKPH (github.com/IMCCretrieval/DKPH, by the same group and "built on BTH": its BERT encoder, hash and decoder
layers and its settings file were read, none copied). Where those sources leave a choice open, the choice is
named below as such.

BTH was designed for frame features of the visual stream only (4096-d VGG frames there). Here it reads the
visual features (``(B, m, d)``, CLIP in the AV-NAS data); **the audio input is ignored**.

Network (per video of m frame features ``x_1 … x_m``)::

    t_i = W_e x_i + P[i]          (t_i = μ + P[i] for a masked frame; μ a learned mask embedding)
    h   = Block(t)                one bidirectional pre-LN Transformer block: 1 head, width 256,
                                  GELU MLP of width 4 · 256, dropout 0.1 (BERT-pytorch's block, as in DKPH)
    c_i = Bin(W_h h_i)            one code per frame, c_i ∈ {−1, +1}^q
    f   = mean_i c_i              the video's code in [−1, 1]; b = sign(f)
    x̂_i = W_d c_i                 the decoder: a linear map from a frame's code back to its feature

``P`` is the fixed sinusoidal position table; ``Bin`` is sign forward and the identity inside [−1, 1] (zero
outside) backward — the straight-through estimator ConMH uses (:func:`avnas_nni.methods.common.binarise`).

Training (no labels), per batch of B videos:

* **Visual cloze** (reproduced): each video hides ``max(1, round(ρ m))`` random frames (ρ = 0.15, BERT's
  masking rate: an assumption, the BTH rate could not be checked), whose tokens become the mask embedding; the
  decoder rebuilds each hidden frame from its code: ``L_vc = mean_{i hidden} ‖x̂_i − x_i‖² / d``.
* **Similarity reconstruction** (adapted): BTH connects each video to similar videos and makes its code
  reconstruct them. Its similarity graph is built offline on the whole training set (DKPH's settings name
  BTH's precomputed latent features and anchors); here the connection is made inside the batch — each video's
  most similar other video ``n(v)`` by cosine of the mean-pooled frames — and the video's code rebuilds the
  neighbour's mean frame: ``L_sr = mean_v ‖W_d f_v − x̄_{n(v)}‖² / d``.
* **Cluster assignment**: not reproduced. It needs k-means over the whole training set, which a method's
  loss here (one batch at a time, :class:`~avnas_nni.methods.base.MethodModule`) cannot see.

``L = L_vc + β L_sr`` with β = 1 (an assumption). At retrieval time nothing is masked.

Size: at d = 4096 (BTH's VGG frames), m = 25, q = 64 the network has 2.12 M parameters, the AV-NAS paper's
Table 2 figure (2M); at the AV-NAS data's d = 768, 1.06 M.

Settings: DKPH's settings file (the only released settings of this code line) — Adam lr 3e-4, batch 256,
50 epochs — stand in for BTH's; its weight decay 1e-4 and step decay are not applied (the project's Adam has
no weight decay). Other adaptations: ``sign(0) = +1`` (:func:`~avnas_nni.codes.sign_codes`); the best val-mAP
epoch is kept, as for every row; masks come from torch's generator, which the project's evaluator seeds per
(seed, epoch, batch).

Not reproduced: the cluster-assignment task; the dataset-wide similarity graph (see above); BTH's own
features, datasets and evaluation protocol (the AV-NAS table retrains it on AV-NAS's features and splits).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avnas_nni.methods.base import HashingMethod
from avnas_nni.methods.common import binarise, sinusoid_table

__all__ = ["BTH"]

logger = logging.getLogger(__name__)


class BTH(HashingMethod):
    """BTH (Li et al., CVPR 2021), visual frames only: see the module docstring for network, loss, sources.

    Parameters
    ----------
    dim : int
        Size d of one visual frame feature (audio is never read).
    length : int
        The most frames m a video may have (25 in the AV-NAS data), the size of the position table.
    bits : int
        Length q of the hash code.
    hidden, depth, heads : int
        Encoder width (256), blocks (1) and heads (1).
    dropout : float
        Dropout of the Transformer block (0.1).
    mask_ratio : float
        Share ρ of each video's frames hidden for the visual cloze (0.15).
    similarity_weight : float
        Weight β of the similarity-reconstruction term (1).
    """

    name = "bth"
    citation = ("Shuyan Li, Xiu Li, Jiwen Lu, Jie Zhou. Self-Supervised Video Hashing via Bidirectional "
                "Transformers. CVPR 2021, 13549-13558.")
    supervised = False
    paper_settings = {"finetune_lr": 3e-4, "batch_size": 256, "finetune_epochs": 50}

    def __init__(self, dim: int = 768, length: int = 25, bits: int = 64, hidden: int = 256, depth: int = 1,
                 heads: int = 1, dropout: float = 0.1, mask_ratio: float = 0.15, similarity_weight: float = 1.0):
        super().__init__()
        sizes = {"dim": dim, "length": length, "bits": bits, "hidden": hidden, "depth": depth, "heads": heads}
        wrong = [f"{key}={value!r}" for key, value in sizes.items() if not isinstance(value, int) or value < 1]
        if wrong:
            raise ValueError(f"BTH: sizes must be positive integers, got {', '.join(wrong)}")
        if hidden % heads:
            raise ValueError(f"BTH: hidden {hidden} is not divisible by heads {heads}")
        if not 0 < mask_ratio < 1:
            raise ValueError(f"BTH: mask_ratio must be in (0, 1), got {mask_ratio}")
        if not 0 <= dropout < 1:
            raise ValueError(f"BTH: dropout must be in [0, 1), got {dropout}")
        self._config = sizes | {"dropout": dropout, "mask_ratio": mask_ratio, "similarity_weight": similarity_weight}
        self.mask_ratio, self.similarity_weight = mask_ratio, float(similarity_weight)
        self.embed = nn.Linear(dim, hidden)
        self.mask_token = nn.Parameter(torch.zeros(hidden))
        nn.init.trunc_normal_(self.mask_token, std=0.02, a=-0.04, b=0.04)
        self.register_buffer("position", sinusoid_table(length, hidden), persistent=False)
        self.encoder = nn.ModuleList(
            nn.TransformerEncoderLayer(hidden, heads, dim_feedforward=4 * hidden, dropout=dropout,
                                       activation="gelu", batch_first=True, norm_first=True)
            for _ in range(depth))
        self.hash = nn.Linear(hidden, bits)
        self.decoder = nn.Linear(bits, dim)
        logger.debug("BTH: %s", self._config)

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def frame_codes(self, visual: torch.Tensor, masked: torch.Tensor | None = None) -> torch.Tensor:
        """Per-frame codes ``(B, m, q)`` in {−1, +1}; frames where ``masked`` (bool ``(B, m)``) is set are hidden."""
        if visual.ndim != 3:
            raise ValueError(f"BTH: expected videos (B, m, d), got {tuple(visual.shape)}")
        length = visual.shape[1]
        if length > self.position.shape[0]:
            raise ValueError(f"BTH: built for {self.position.shape[0]} frames, got {length}")
        tokens = self.embed(visual)
        if masked is not None:
            tokens = torch.where(masked[..., None], self.mask_token.expand_as(tokens), tokens)
        hidden = tokens + self.position[:length]
        for block in self.encoder:
            hidden = block(hidden)
        return binarise(self.hash(hidden))

    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Real codes ``(B, q)``, each the average of the video's per-frame ±1 codes; ``audio`` is unused."""
        return self.frame_codes(visual).mean(1)

    def cloze_mask(self, batch: int, length: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """A ``(B, m)`` bool mask hiding ``max(1, round(ρ m))`` random frames per video (at least one seen)."""
        hidden = min(max(1, round(self.mask_ratio * length)), length - 1)
        if hidden < 1:
            raise ValueError(f"BTH: a video of {length} frame(s) has none to hide")
        order = torch.rand(batch, length, device=device).argsort(dim=1)
        return torch.zeros(batch, length, dtype=torch.bool, device=device).scatter(1, order[:, :hidden], True)

    def cloze_error(self, visual: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """Visual-cloze loss: mean squared error per feature of the hidden frames rebuilt from their codes."""
        rebuilt = self.decoder(self.frame_codes(visual, masked))
        return F.mse_loss(rebuilt[masked], visual[masked])

    def training_loss(self, visual: torch.Tensor, audio: torch.Tensor, *, tau: float = 0.0) -> torch.Tensor:
        """BTH's loss of unlabelled videos ``visual`` (B, m, d): visual cloze + β · similarity reconstruction.

        ``tau`` is not used (BTH has no temperature).
        """
        if visual.ndim != 3:
            raise ValueError(f"BTH: expected videos (B, m, d), got {tuple(visual.shape)}")
        batch, length, _ = visual.shape
        masked = self.cloze_mask(batch, length, visual.device)
        codes = self.frame_codes(visual, masked)
        rebuilt = self.decoder(codes)
        loss = F.mse_loss(rebuilt[masked], visual[masked])
        if batch > 1 and self.similarity_weight:
            pooled = visual.mean(1)
            normed = F.normalize(pooled, dim=1)
            similarity = (normed @ normed.T).fill_diagonal_(float("-inf"))
            neighbour = similarity.argmax(1)
            loss = loss + self.similarity_weight * F.mse_loss(self.decoder(codes.mean(1)), pooled[neighbour])
        return loss
