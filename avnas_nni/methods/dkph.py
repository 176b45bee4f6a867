"""DKPH, a self-supervised (label-free) video-hashing comparator of the paper's Table 2 (line 5).

Pandeng Li, Hongtao Xie, Jiannan Ge, Lei Zhang, Shaobo Min, Yongdong Zhang. *Dual-Stream Knowledge-Preserving
Hashing for Unsupervised Video Retrieval.* ECCV 2022, LNCS 13674, 181–197 (reference [25] of the AV-NAS paper).
The DKPH paper's full text was not at hand: this is written from its abstract (a simple dual-stream structure, a
*temporal layer* and a *hash layer*; with semantic similarity knowledge obtained from self-supervision the hash
layer captures the information for semantic retrieval while the temporal layer captures the information for
reconstruction, so the binary code is freed from frame-level detail), the AV-NAS paper's account of it (Table 2:
Transformer-based, 4M parameters) and the authors' public repository (github.com/IMCCretrieval/DKPH: its model,
training loop, data loader and settings file were read, none copied; its BERT embedding module, its precomputed
similarity matrix, anchors and teacher features were not in it). Where those sources leave a choice open, the
choice is named below as such.

DKPH was designed for frame features of the visual stream only (4096-d VGG frames there). Here it reads the
visual features (``(B, m, d)``, CLIP in the AV-NAS data); **the audio input is ignored**.

Network (per video of m frame features ``x_1 … x_m``), the repository's::

    e_i = W_e x_i + P[i]              frame embedding, fixed sinusoidal positions P, dropout
    h   = Block(e)                    one BERT block (pre-LN, 1 head, width H = 256, GELU MLP 4H, dropout 0.1)
    b   = Bin(W_b [h_1; …; h_m])      hash stream: one linear map of the m·H concatenated states, b ∈ {−1, +1}^q
    t_i = W_t h_i                     temporal stream: a real q-vector per frame
    x̂_i = W_d (b + t_i)               decoder: the frame rebuilt from the code plus its temporal vector

``Bin`` is sign forward. Backward, the repository's rounding of ``clamp((x + 1) / 2, 0, 1)`` with its masked
straight-through gradient passes the gradient inside [−1, 1] and stops it outside (as
:func:`avnas_nni.methods.common.binarise` does: ``straight_through="clamped"``); here, by default, the gradient
passes everywhere (``"identity"``; see *Adapted* for why). The code of a video is ``b`` (exactly ±1). Because
the frame-level detail can flow through ``t_i``, reconstruction no longer forces the code to spend its bits on it
(the "decoupling" of the two streams).

Training (no labels), per batch of B videos, as the repository's loop but with the knowledge built inside the
batch (see *Adapted*):

* **Masking** (reproduced): each frame is chosen with probability ρ = 0.15; a chosen frame is zeroed (80 %),
  replaced by a random frame of a random video of the batch (10 %) or kept (10 %) — BERT's rule.
* **Reconstruction**: ``L_rec = mean_{v,i} ‖x̂_{v,i} − x_{v,i}‖² / d`` over every frame of the unmasked videos.
* **Semantic knowledge** from the videos' mean-pooled frames ``x̄_v`` (cosine similarity), for each video v:
  a partner ``j(v)`` — with probability ½ one of its k = 3 nearest videos (``s_v = +1``), otherwise a video of
  middle similarity rank (``s_v = −1``) — and an anchor ``a_v``, the mean of ``x̄_v`` and its k nearest
  videos' pooled frames.
* **Binary similarity** (hash stream): ``L_b = mean_v (s_v − b_v·b_{j(v)} / q)²``.
* **Knowledge preserving** (temporal layer): with ``z_v = R mean_i h_{v,i}`` (R a linear read-out, see below),
  ``e_v = ‖z_v − a_v‖² / d`` and ``w_v = (1 − s_v) / 2``:
  ``L_t = mean_v (e_v + e_{j(v)}) + 0.1 · mean_v max(‖z_v − w_v a_v‖ − ‖z_v − w_v a_{j(v)}‖ + 0.5, 0)``
  (the triplet term acts on dissimilar pairs only: for a similar pair both distances are ‖z_v‖).

``L = L_rec + 0.9 L_t + 0.11 L_b`` (the repository's weights). At retrieval time nothing is masked.

Reproduced: the network above (BERT block of width 256 with one head, hash layer on the concatenated frame
states, per-frame temporal layer, linear decoder of code + temporal vector), the sign binarisation (the
repository's gradient as an option), BERT-style frame masking, the three losses with the repository's weights,
triplet margin 0.5 and the ±1 pair targets, no labels; the optimiser settings (below).

Adapted (choices the sources leave open, or that this project's one-batch-at-a-time loss forces):

* **Where the knowledge comes from.** The repository reads a similarity matrix (tags: nearest videos, videos
  at middle distance, others) and 2,000 anchors (k-means centres) precomputed offline on the whole training
  set from the latent features of a *teacher* (the same network trained first with the reconstruction loss
  alone). A method's loss here sees one batch at a time (:class:`~avnas_nni.methods.base.MethodModule`) and
  has no teacher stage, so the knowledge is computed inside each batch from the input's mean-pooled frames
  (the teacher replaced by the features themselves): the k = 3 nearest videos by cosine are the similar
  ones, the middle half of the ranking (ranks ⌊(B−1)/4⌋ … B−1−⌊(B−1)/4⌋, past the k nearest) the
  middle-distance ones, and a video's anchor is the mean of its own and its k nearest videos' pooled frames
  (a local cluster centre in place of a k-means centre). In a batch of one video the video is its own
  (similar) partner.
* **The read-out R** (H → d, linear, with bias): the teacher's anchors lived in the network's own hidden space;
  these live in the feature space, so the mean hidden state is mapped there before it is compared. It is used
  in training only. With it the network has 3.58 M parameters at DKPH's 4096-d VGG frames, m = 25, q = 64 —
  the AV-NAS paper's Table 2 figure is 4M — (2.53 M without it); 1.66 M at the AV-NAS data's d = 768, 1.24 M at
  the embedded data's d = 48.
* **The binarisation's gradient** (identity, not the repository's clamped one). The hash layer reads m·H = 6,400
  concatenated states whose shared part (the positions, the biases) is large, and Adam moves each of its weights
  by about the learning rate on the first step, so one step moves every video's pre-activation alike by several
  units: on the embedded data at the quick profile's lr 1e-3, every bit of every video left [−1, 1] after the
  first step, where the clamped gradient is zero, and all 300 validation videos kept one code for the whole run
  (val mAP@100 0.096, constant). Under the repository's own settings (lr 3e-4, batch 256) half of the
  pre-activations left [−1, 1] on the first step. With the identity gradient the bits come back (300 distinct
  codes after 20 steps at lr 1e-3). ``straight_through="clamped"`` restores the repository's rule.
* **Frame count.** The hash layer reads the concatenation of ``length`` frame states (25 in the repository,
  hard-wired); a shorter video's missing frames count as zero states.
* **Block details.** The repository's BERT block (BERT-pytorch's) is built here from PyTorch's pre-LN
  ``TransformerEncoderLayer`` (same sizes and dropouts; exact GELU and LayerNorm ε 1e-5 where BERT-pytorch has
  the tanh GELU and ε 1e-6) followed by the block's own output dropout; the frame embedding is a linear map plus
  the fixed sinusoidal positions and dropout (the repository's embedding module was not released).
* ``sign(0) = +1`` (:func:`~avnas_nni.codes.sign_codes`; the repository's rounding sends 0 to −1); masks,
  partners and random frames come from torch's generator, which the project's evaluator seeds per (seed, epoch,
  batch); the best val-mAP epoch is kept, as for every row.

Settings: the repository's settings file — Adam lr 3e-4 (PyTorch's default ε 1e-8; its ``weight_decay`` 1e-4 is
never passed to the optimiser), batch 256, 50 epochs, the learning rate × 0.9 every 20 epochs, never below 1e-4
(here: never below 1e-4 nor raised above the run's rate) — are the row's paper settings and the defaults.

Not reproduced: the teacher stage and the dataset-wide similarity matrix and anchors (see *Adapted*); DKPH's own
features, datasets and evaluation protocol (the AV-NAS table retrains it on AV-NAS's features and splits).
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from avnas_nni.methods.base import HashingMethod, step_decay
from avnas_nni.methods.common import binarise, binarise_identity_gradient, sinusoid_table

__all__ = ["DKPH", "BatchKnowledge", "STRAIGHT_THROUGH"]

logger = logging.getLogger(__name__)

#: The binarisation's backward pass: ``"clamped"`` (the repository's: zero outside [−1, 1]) or ``"identity"``.
STRAIGHT_THROUGH = {"clamped": binarise, "identity": binarise_identity_gradient}

#: BERT's masking rule: of the chosen frames, this share is zeroed and the next 10 % replaced by random frames.
_ZEROED, _REPLACED = 0.8, 0.9


class BatchKnowledge(NamedTuple):
    """DKPH's semantic knowledge of a batch of B videos."""

    #: (B,) long: each video's partner in the batch.
    partner: torch.Tensor
    #: (B,) bool: True where the partner is one of the video's nearest videos (s = +1), False at middle distance.
    similar: torch.Tensor
    #: (B, d): each video's anchor, the mean pooled frames of the video and its nearest videos.
    anchors: torch.Tensor


class DKPH(HashingMethod):
    """DKPH (Li et al., ECCV 2022), visual frames only: see the module docstring for network, loss, sources.

    Parameters
    ----------
    dim : int
        Size d of one visual frame feature (audio is never read).
    length : int
        The most frames m a video may have (25 in the AV-NAS data); the hash layer reads ``length`` frame states.
    bits : int
        Length q of the hash code.
    hidden, depth, heads : int
        Width H of the temporal layer (256), its BERT blocks (1) and heads (1).
    dropout : float
        Dropout of the embedding and the blocks (0.1).
    mask_ratio : float
        Probability ρ that a frame is chosen by the masking rule (0.15).
    neighbours : int
        k, the nearest videos of the batch that count as similar and make up a video's anchor (3).
    knowledge_weight, triplet_weight, similarity_weight : float
        Weights of the knowledge-preserving term (0.9), of its triplet part within it (0.1) and of the binary
        similarity term (0.11).
    margin : float
        Margin of the triplet part (0.5).
    straight_through : {"identity", "clamped"}
        The binarisation's gradient: the identity everywhere (default), or the repository's, zero outside
        [−1, 1] (see the module docstring for why the default differs).
    lr_step_epochs : int or None
        The learning rate is multiplied by ``lr_gamma`` every this many epochs (20); None: constant.
    lr_gamma : float
        Factor of each step (0.9).
    min_lr : float
        The schedule never takes the rate below this (1e-4), nor raises a lower starting rate to it.
    """

    name = "dkph"
    citation = ("Pandeng Li, Hongtao Xie, Jiannan Ge, Lei Zhang, Shaobo Min, Yongdong Zhang. Dual-Stream "
                "Knowledge-Preserving Hashing for Unsupervised Video Retrieval. ECCV 2022, LNCS 13674, 181-197.")
    supervised = False
    paper_settings = {"finetune_lr": 3e-4, "finetune_eps": 1e-8, "batch_size": 256, "finetune_epochs": 50}

    def __init__(self, dim: int = 768, length: int = 25, bits: int = 64, hidden: int = 256, depth: int = 1,
                 heads: int = 1, dropout: float = 0.1, mask_ratio: float = 0.15, neighbours: int = 3,
                 knowledge_weight: float = 0.9, triplet_weight: float = 0.1, similarity_weight: float = 0.11,
                 margin: float = 0.5, straight_through: str = "identity", lr_step_epochs: int | None = 20,
                 lr_gamma: float = 0.9, min_lr: float = 1e-4):
        super().__init__()
        sizes = {"dim": dim, "length": length, "bits": bits, "hidden": hidden, "depth": depth, "heads": heads,
                 "neighbours": neighbours}
        wrong = [f"{key}={value!r}" for key, value in sizes.items() if not isinstance(value, int) or value < 1]
        if wrong:
            raise ValueError(f"DKPH: sizes must be positive integers, got {', '.join(wrong)}")
        if hidden % heads:
            raise ValueError(f"DKPH: hidden {hidden} is not divisible by heads {heads}")
        if not 0 <= dropout < 1:
            raise ValueError(f"DKPH: dropout must be in [0, 1), got {dropout}")
        if not 0 < mask_ratio < 1:
            raise ValueError(f"DKPH: mask_ratio must be in (0, 1), got {mask_ratio}")
        weights = {"knowledge_weight": knowledge_weight, "triplet_weight": triplet_weight,
                   "similarity_weight": similarity_weight, "margin": margin}
        negative = [f"{key}={value!r}" for key, value in weights.items() if value < 0]
        if negative:
            raise ValueError(f"DKPH: weights and margin must be non-negative, got {', '.join(negative)}")
        if straight_through not in STRAIGHT_THROUGH:
            raise ValueError(f"DKPH: straight_through must be one of {sorted(STRAIGHT_THROUGH)}, "
                             f"got {straight_through!r}")
        if lr_step_epochs is not None and (not isinstance(lr_step_epochs, int) or lr_step_epochs < 1):
            raise ValueError(f"DKPH: lr_step_epochs must be a positive integer or None, got {lr_step_epochs!r}")
        if not 0 < lr_gamma <= 1 or min_lr < 0:
            raise ValueError(f"DKPH: lr_gamma must be in (0, 1] and min_lr non-negative, got {lr_gamma}, {min_lr}")
        self._config = sizes | {"dropout": dropout, "mask_ratio": mask_ratio} | weights | {
            "straight_through": straight_through, "lr_step_epochs": lr_step_epochs, "lr_gamma": lr_gamma,
            "min_lr": min_lr}
        self._binarise = STRAIGHT_THROUGH[straight_through]
        self.length, self.bits, self.neighbours, self.mask_ratio = length, bits, neighbours, mask_ratio
        self.knowledge_weight, self.triplet_weight = float(knowledge_weight), float(triplet_weight)
        self.similarity_weight, self.margin = float(similarity_weight), float(margin)
        # The temporal layer: frame embedding with fixed positions, then BERT blocks (each with its output dropout).
        self.embed = nn.Linear(dim, hidden)
        self.register_buffer("position", sinusoid_table(length, hidden), persistent=False)
        self.embed_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(hidden, heads, dim_feedforward=4 * hidden, dropout=dropout,
                                       activation="gelu", batch_first=True, norm_first=True)
            for _ in range(depth))
        self.block_dropout = nn.Dropout(dropout)
        # The two streams, the decoder, and the read-out of the knowledge term (training only).
        self.hash = nn.Linear(length * hidden, bits)
        self.temporal = nn.Linear(hidden, bits)
        self.decoder = nn.Linear(bits, dim)
        self.readout = nn.Linear(hidden, dim)
        logger.debug("DKPH: %s", self._config)

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def _check_frames(self, visual: torch.Tensor) -> int:
        if visual.ndim != 3:
            raise ValueError(f"DKPH: expected videos (B, m, d), got {tuple(visual.shape)}")
        length = visual.shape[1]
        if length > self.length:
            raise ValueError(f"DKPH: built for {self.length} frames, got {length}")
        return length

    def hidden_states(self, visual: torch.Tensor) -> torch.Tensor:
        """The temporal layer's states ``(B, m, H)`` of videos ``(B, m, d)``."""
        length = self._check_frames(visual)
        hidden = self.embed_dropout(self.embed(visual) + self.position[:length])
        for block in self.blocks:
            hidden = self.block_dropout(block(hidden))
        return hidden

    def hash_codes(self, hidden: torch.Tensor) -> torch.Tensor:
        """The hash stream: codes ``(B, q)`` ∈ {−1, +1} of states ``(B, m, H)`` (missing frames count as zero)."""
        padded = F.pad(hidden, (0, 0, 0, self.length - hidden.shape[1]))
        return self._binarise(self.hash(padded.flatten(1)))

    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, q)``, exactly ±1 (the hash stream); ``audio`` is unused."""
        return self.hash_codes(self.hidden_states(visual))

    def reconstruct(self, codes: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """Frames ``(B, m, d)`` rebuilt from codes ``(B, q)`` plus the temporal stream of states ``(B, m, H)``."""
        return self.decoder(codes[:, None] + self.temporal(hidden))

    def mask_frames(self, visual: torch.Tensor) -> torch.Tensor:
        """BERT's rule on frames: each chosen with probability ρ, then zeroed (80 %), swapped for a random frame of
        the batch (10 %) or kept (10 %). Returns the masked copy of ``visual`` (B, m, d)."""
        batch, length, _ = visual.shape
        chosen = torch.rand(batch, length, device=visual.device) < self.mask_ratio
        kind = torch.rand(batch, length, device=visual.device)
        frames = visual.reshape(batch * length, -1)
        random = frames[torch.randint(batch * length, (batch, length), device=visual.device)]
        masked = torch.where((chosen & (kind < _ZEROED))[..., None], torch.zeros_like(visual), visual)
        replaced = chosen & (kind >= _ZEROED) & (kind < _REPLACED)
        return torch.where(replaced[..., None], random, masked)

    @torch.no_grad()
    def knowledge(self, visual: torch.Tensor) -> BatchKnowledge:
        """The batch's semantic knowledge from the mean-pooled frames of videos ``(B, m, d)``: each video's partner
        (one of its k nearest by cosine, or one of middle similarity rank, with probability ½ each) and anchor."""
        pooled = visual.mean(1)
        batch = len(pooled)
        if batch < 2:  # no other video: the video is its own similar partner
            return BatchKnowledge(torch.zeros(batch, dtype=torch.long, device=visual.device),
                                  torch.ones(batch, dtype=torch.bool, device=visual.device), pooled)
        normed = F.normalize(pooled, dim=1)
        similarity = (normed @ normed.T).fill_diagonal_(float("-inf"))
        others = batch - 1
        ranked = similarity.argsort(dim=1, descending=True)[:, :others]  # the other videos, most similar first
        nearest = min(self.neighbours, others)
        anchors = (pooled + pooled[ranked[:, :nearest]].sum(1)) / (nearest + 1)
        low = min(max(nearest, others // 4), others - 1)
        high = max(low + 1, others - others // 4)
        similar = torch.rand(batch, device=visual.device) < 0.5
        rank = torch.where(similar, torch.randint(nearest, (batch,), device=visual.device),
                           torch.randint(low, high, (batch,), device=visual.device))
        return BatchKnowledge(ranked.gather(1, rank[:, None]).squeeze(1), similar, anchors)

    def training_loss(self, visual: torch.Tensor, audio: torch.Tensor, *, tau: float = 0.0) -> torch.Tensor:
        """DKPH's loss of unlabelled videos ``visual`` (B, m, d): ``L_rec + 0.9 L_t + 0.11 L_b``.

        ``tau`` is not used (DKPH has no temperature); ``audio`` is not read.
        """
        self._check_frames(visual)
        hidden = self.hidden_states(self.mask_frames(visual))
        codes = self.hash_codes(hidden)
        reconstruction = F.mse_loss(self.reconstruct(codes, hidden), visual)
        partner, similar, anchors = self.knowledge(visual)
        target = similar.to(codes.dtype) * 2 - 1
        binary_similarity = (target - (codes * codes[partner]).sum(1) / self.bits).pow(2).mean()
        latent = self.readout(hidden.mean(1))
        errors = (latent - anchors).pow(2).mean(1)
        dissimilar = (~similar).to(latent.dtype)[:, None]  # (1 − s) / 2
        triplet = F.triplet_margin_loss(latent, dissimilar * anchors, dissimilar * anchors[partner],
                                        margin=self.margin)
        preserving = (errors + errors[partner]).mean() + self.triplet_weight * triplet
        return reconstruction + self.knowledge_weight * preserving + self.similarity_weight * binary_similarity

    def lr_scheduler(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler | None:
        """×``lr_gamma`` every ``lr_step_epochs`` epochs, never below ``min_lr``: :func:`.base.step_decay`."""
        return step_decay(optimizer, *(self._config[key] for key in ("lr_step_epochs", "lr_gamma", "min_lr")))
