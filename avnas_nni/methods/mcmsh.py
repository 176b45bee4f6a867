"""MCMSH, a self-supervised (label-free) video-hashing comparator of the paper's Table 2 (line 3).

Yanbin Hao, Jingru Duan, Hao Zhang, Bin Zhu, Pengyuan Zhou, Xiangnan He. *Unsupervised Video Hashing with
Multi-granularity Contextualization and Multi-structure Preservation.* ACM Multimedia 2022, 3754–3763 (reference
[20] of the AV-NAS paper). Sources at hand: the paper's abstract (three self-gating modules for long-, middle- and
short-range dependencies densely integrated into an MLP-Mixer, "MC-MLP"; three data structures — clusters, local
neighbourhood similarity, inter/intra-class variation — in one multi-objective loss), the AV-NAS paper's account
of it (Table 2: MLP-based, 1.2M parameters) and the authors' public repository (github.com/haoyanbin918/MCMSH:
model, gating modules, data loader, training loop, settings and the offline k-means / anchor-graph / PCA scripts
read, none copied). The paper's full text was not at hand, so the repository stands in for it; every number below
is the repository's unless marked *Adapted*.

MCMSH was designed for frame features of the visual stream only (4096-d VGG frames on FCVID). Here it reads the
visual features (``(B, m, d)``, CLIP in the AV-NAS data); **the audio input is ignored**.

Network (MC-MLP, per video ``X`` of m frames × d; H = 256 channels, q bits)::

    Z   = ReLU(X W_p + β_p)                                   (m, H)  frame projection
    Z   = Z + [G_L + G_M + G_S](MLP_m(Zᵀ))ᵀ                    token mixer: an MLP over the m frames, then gates
    Z   = Z + [G_L + G_M + G_S](MLP_H(Z))                       channel mixer: an MLP over the H channels, then gates
    E   = [G_L + G_M + G_S](Z)                                 a last set of gates (no residual)
    h   = mean_t tanh(α (E_t W_h + β_h)),   b = sign(h)        the code in [−1, 1]; α = √(epoch + 1)

``MLP_k`` is ``Linear(k, 2k)``, GELU, dropout 0.5, ``Linear(2k, k)``, dropout 0.5. Each gate ``G`` acts on a
``(n, c)`` map: a 1×1 convolution mixing the n rows, a sigmoid gate over the c axis, another 1×1 convolution::

    G_L (long range):   gate_c   = σ(BN(W_2 ReLU(BN(W_1 mean_n X))))            one gate per column, from all rows
    G_M (middle range): gate_{c,i} = up(σ(BN(conv3(ReLU(BN(conv3(pool_{n/3} X)))))))  rows pooled to ⌊n/3⌋ segments
    G_S (short range):  gate_{c,i} = σ(BN(conv3(ReLU(BN(conv3 X)))))              3-tap convolutions over the rows

with a reduction of the c axis by r (r = 4 in the token mixer, whose map is (H, m): gates over frames; r = 16
elsewhere, whose map is (m, H): gates over channels, grouped convolutions with H/16 groups). In the channel mixer
and the last set, the three gates see the whole video, segments of three frames and neighbouring frames — the
paper's long/middle/short-range granularities. Initialisation as the repository: the long-range gate's linear
maps N(0, 0.001), the other gates' first convolution Kaiming-normal (fan-out) and second Xavier-normal, BN
weights 1 and biases 0, everything else PyTorch's default.

Training (no labels). Offline, from the mean-pooled training videos ``x̄``: A k-means centres ``c_k`` (the
anchors; Lloyd's algorithm from A random videos, at most 16 updates, empty clusters dropped), each video's
nearest anchors with weights ``z_{vk} = softmax_k(−‖x̄_v − c_k‖² / 2σ_s²)`` over its s nearest (σ_s: the mean
distance to the s-th nearest anchor over √2), the anchor graphs ``S_s = [Z_s Λ_s⁻¹ Z_sᵀ > 10⁻⁵]`` (Λ_s: the
column sums of Z_s) for s = 3, 4, 5, and the PCA of the anchors to H dimensions ``p_k``. A pair of videos is
*similar* (tag 1) when ``S_3`` links them and *dissimilar* (tag 2, "middle distance") when ``S_5`` does but
``S_4`` does not. Per training video v of a batch (B videos): a second video u, a similar one with
probability ½ (``y = 1``) or else a dissimilar one (``y = −1``); a similar video v⁺ and two dissimilar ones v⁻₁,
v⁻₂ (v⁻₂ redrawn once if similar to v⁻₁). v and u are masked BERT-style: each frame with probability 0.15 is
hidden, then zeroed (80 %), replaced by a random frame of a random training video (10 %) or left (10 %). With
``h, b, E`` of the network and ``k(v)`` the nearest anchor of v::

    L_cluster = (‖mean_t E_v − p_{k(v)}‖² + ‖mean_t E_u − p_{k(u)}‖²) / (H B)       clusters
    L_sim     = mean (y − h_v · h_u / q)²                                          neighbourhood similarity
    L_quant   = (‖h_v − b_v‖² + ‖h_u − b_u‖²) / (q B)
    L_quad    = mean [q/4 + ‖h_v − h_{v⁺}‖² − ‖h_v − h_{v⁻₁}‖²]₊ + [q/64 + ‖h_v − h_{v⁺}‖² − ‖h_{v⁻₁} − h_{v⁻₂}‖²]₊
    L         = 0.8 L_cluster + 0.1 L_sim + 0.01 L_quant + 0.01 L_quad               inter/intra-class variation

``b = sign(h)`` passes the gradient clipped to [−1, 1] backwards (the repository's sign function).

Settings (the repository's FCVID settings): Adam lr 3e-4 (no weight decay reaches the optimiser), × 0.9 every 20
epochs with a floor of 1e-4, batch 256, epochs 0–55 (56), 2000 anchors for FCVID's 45,585 training videos.

Adapted, and why:

* **Where the structure is built.** The repository computes the k-means anchors, the anchor graph and the PCA
  once, offline, before training; here :meth:`MCMSH.prepare` does it from the training split's visual features
  (never its labels), which :class:`~avnas_nni.methods.base.MethodModule` hands it before the first training
  step, and recomputes it identically (its seed is the run's) on a resumed run. Nothing of it is saved with the
  weights: it is not used to encode.
* **Number of anchors.** 2000 anchors suit FCVID's 45,585 videos but exceed the embedded data's 1,500; the
  anchors are ``round(n / videos_per_anchor)`` with ``videos_per_anchor`` = 45,585 / 2000 ≈ 22.8 (at least 6, so
  that tag 2 exists), which gives 2000 on FCVID.
* **PCA.** The repository takes the first 256 eigenvectors of ``np.linalg.eig`` (which does not sort them); here
  the leading principal components. Where d or the anchor count is below H, the targets are zero-padded to H.
* **Masking.** The repository masks frames in its stored feature array in place, so masks accumulate over
  epochs; here every step masks a fresh copy.
* **Graph computed per batch.** Tags are computed for the batch's videos from their features (``Z_B Λ⁻¹ Zᵀ``)
  rather than read from a stored n × n matrix; "dissimilar" falls back to untagged videos when a video has no tag
  2 video, as in the code, and to any other video when it has none of those either; "tag 2" excludes pairs that
  ``S_3`` links (the code's ``2(S_5 − S_4) + S_3`` leaves such edge cases to rounding).
* **One forward pass.** The five groups (v, u, v⁺, v⁻₁, v⁻₂) go through the network together, so BatchNorm's
  statistics are taken over all 5B videos (the code makes five passes); this also lets a batch of one video train.
* **α** comes from the epoch through :meth:`MCMSH.start_epoch` and is stored with the weights (a buffer), so a
  reloaded network encodes with the α of the epoch it was kept at.
* **Fewer frames** than ``length`` are zero-padded at the end (the token MLP has a fixed width m).
* The gates' 1×1 convolutions are linear layers over the same axis (the same map, parameters and initialisation;
  faster on CPU).
* ``sign(0) = +1`` (:func:`~avnas_nni.codes.sign_codes`); the best val-mAP epoch is kept, as for every row (the
  repository evaluates epochs 26–55 on its test set).

Size: at m = 25, q = 64, H = 256: 1.24M parameters at d = 2048 (the AV-NAS paper's 1.2M), 1.76M at the
repository's d = 4096, 0.91M at the AV-NAS data's d = 768.

Not reproduced: the paper's own ablations and datasets (the AV-NAS table retrains it on AV-NAS's features and
splits); the repository's in-place corruption of the training features (see *Masking*).
"""

from __future__ import annotations

import abc
import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avnas_nni.methods.base import HashingMethod, step_decay

__all__ = ["MCMSH", "LongRangeGate", "MiddleRangeGate", "ShortRangeGate", "straight_through_sign"]

logger = logging.getLogger(__name__)

#: Numbers of nearest anchors of the three anchor graphs: similar (3), and dissimilar = linked at 5, not at 4.
_NEAR, _MIDDLE, _FAR = 3, 4, 5
#: An anchor-graph entry above this links two videos (the repository's threshold).
_LINK = 1e-5


class _StraightThroughSign(torch.autograd.Function):
    """sign forward; the incoming gradient clipped to [−1, 1] backward (the repository's ``LBSign``)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x > 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.clamp(-1.0, 1.0)


def straight_through_sign(x: torch.Tensor) -> torch.Tensor:
    """``±1`` (``+1`` where ``x > 0``); backward, the incoming gradient clipped to [−1, 1]."""
    return _StraightThroughSign.apply(x)


class _Gate(nn.Module, metaclass=abc.ABCMeta):
    """A self-gating module on ``(B, n, c)`` maps: a linear map of the n rows (the repository's 1×1 convolution,
    as a matrix product), a gate over c, another linear map of the rows."""

    def __init__(self, rows: int):
        super().__init__()
        # Linear's default initialisation is a 1×1 Conv1d's (same fan-in), so the weights start alike too.
        self.mix_in = nn.Linear(rows, rows)
        self.mix_out = nn.Linear(rows, rows)

    @abc.abstractmethod
    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The gate of ``x`` (B, c, n), broadcastable to it (each range's own: the subclasses)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mix_in(x.transpose(1, 2))  # (B, c, n): rows mixed
        return self.mix_out(x * self.gate(x)).transpose(1, 2)


class LongRangeGate(_Gate):
    """Long range: one gate per column c from the mean over all n rows (a squeeze-and-excitation gate)."""

    def __init__(self, rows: int, columns: int, reduction: int):
        super().__init__(rows)
        self.squeeze = nn.Linear(columns, columns // reduction, bias=False)
        self.squeeze_norm = nn.BatchNorm1d(columns // reduction)
        self.excite = nn.Linear(columns // reduction, columns, bias=False)
        self.excite_norm = nn.BatchNorm1d(columns)
        nn.init.normal_(self.squeeze.weight, 0.0, 0.001)
        nn.init.normal_(self.excite.weight, 0.0, 0.001)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.squeeze_norm(self.squeeze(x.mean(2))))
        return torch.sigmoid(self.excite_norm(self.excite(y)))[..., None]


class _ConvGate(_Gate):
    """A gate from two 3-tap convolutions along the rows (c channels → c/r → c)."""

    def __init__(self, rows: int, columns: int, reduction: int, grouped: bool):
        super().__init__(rows)
        groups = columns // reduction if grouped else 1
        self.squeeze = nn.Conv1d(columns, columns // reduction, 3, padding=1, bias=False, groups=groups)
        self.squeeze_norm = nn.BatchNorm1d(columns // reduction)
        self.excite = nn.Conv1d(columns // reduction, columns, 3, padding=1, bias=False, groups=groups)
        self.excite_norm = nn.BatchNorm1d(columns)
        nn.init.kaiming_normal_(self.squeeze.weight, mode="fan_out", nonlinearity="relu")
        nn.init.xavier_normal_(self.excite.weight)

    def conv_gate(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.squeeze_norm(self.squeeze(x)))
        return torch.sigmoid(self.excite_norm(self.excite(y)))


class MiddleRangeGate(_ConvGate):
    """Middle range: the rows average-pooled to ⌊n/3⌋ segments, convolved, and stretched back to n."""

    def __init__(self, rows: int, columns: int, reduction: int, grouped: bool = True):
        super().__init__(rows, columns, reduction, grouped)
        self.segments = rows // 3

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool1d(x, self.segments)
        return F.adaptive_avg_pool1d(self.conv_gate(pooled), x.shape[2])


class ShortRangeGate(_ConvGate):
    """Short range: the convolutions over the rows at full resolution (neighbouring rows)."""

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_gate(x)


class _Gates(nn.Module):
    """The sum of a long-, a middle- and a short-range gate of the same ``(n, c)`` map."""

    def __init__(self, rows: int, columns: int, reduction: int, grouped: bool):
        super().__init__()
        self.long = LongRangeGate(rows, columns, reduction)
        self.middle = MiddleRangeGate(rows, columns, reduction, grouped)
        self.short = ShortRangeGate(rows, columns, reduction, grouped)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.long(x) + self.middle(x) + self.short(x)


class _MLP(nn.Sequential):
    def __init__(self, width: int, expansion: int, dropout: float):
        super().__init__(nn.Linear(width, width * expansion), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(width * expansion, width), nn.Dropout(dropout))


@dataclass
class _Structure:
    """The training set's structure (see the module docstring), built by :meth:`MCMSH.prepare`."""

    frames: torch.Tensor  # (n, m, d) the training videos (a reference, not a copy)
    centres: torch.Tensor  # (A, d) anchors
    targets: torch.Tensor  # (A, H) their principal components, zero-padded
    sigmas: dict[int, float]  # kernel width per number of nearest anchors s
    graphs: dict[int, torch.Tensor]  # sparse (n, A) Z_s
    degrees: dict[int, torch.Tensor]  # (A,) column sums of Z_s


def _nearest_anchors(pooled: torch.Tensor, centres: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared distances and indices ``(n, count)`` of each row's ``count`` nearest anchors, nearest first."""
    distances = torch.cdist(pooled.double(), centres.double()).square()
    values, indices = distances.topk(count, dim=1, largest=False)
    return values, indices


def _anchor_weights(distances: torch.Tensor, sigma: float) -> torch.Tensor:
    """Softmax over a row's nearest anchors of ``−distance / 2σ²`` (the repository's anchor-graph weights)."""
    return torch.softmax(-distances / (2 * sigma**2), dim=1)


def _kmeans(points: torch.Tensor, clusters: int, generator: torch.Generator, updates: int = 16) -> torch.Tensor:
    """Lloyd's k-means from ``clusters`` distinct random points, at most ``updates`` updates; empty clusters dropped."""
    centres = points[torch.randperm(len(points), generator=generator)[:clusters]]
    assignment = torch.cdist(points, centres).argmin(1)
    for _ in range(updates):
        used, assignment = assignment.unique(return_inverse=True)
        sums = torch.zeros(len(used), points.shape[1], dtype=points.dtype).index_add_(0, assignment, points)
        centres = sums / torch.bincount(assignment, minlength=len(used)).to(points.dtype)[:, None]
        updated = torch.cdist(points, centres).argmin(1)
        if torch.equal(updated, assignment):
            break
        assignment = updated
    return centres


class MCMSH(HashingMethod):
    """MCMSH (Hao et al., ACM MM 2022), visual frames only: see the module docstring for network, loss, sources.

    Parameters
    ----------
    dim : int
        Size d of one visual frame feature (audio is never read).
    length : int
        Frames per video m (25 in the AV-NAS data): the width of the token MLP; shorter videos are zero-padded.
    bits : int
        Code length q.
    hidden : int
        Channels H of the mixer (256).
    expansion : int
        Width factor of the mixers' MLPs (2).
    dropout : float
        Dropout of the mixers' MLPs (0.5).
    token_reduction, channel_reduction : int
        Reduction r of the gates over frames (4) and over channels (16).
    mask_ratio : float
        Share of the frames of v and u masked BERT-style (0.15).
    videos_per_anchor : float
        Training videos per k-means anchor (45,585 / 2000: the repository's FCVID setting).
    cluster_weight, similarity_weight, quantisation_weight, quadruplet_weight : float
        Weights of the four loss terms (0.8, 0.1, 0.01, 0.01).
    lr_step_epochs : int or None
        The learning rate is multiplied by ``lr_gamma`` every this many epochs (20); None: constant.
    lr_gamma, min_lr : float
        Decay factor (0.9) and floor (1e-4) of that schedule.
    """

    name = "mcmsh"
    citation = ("Yanbin Hao, Jingru Duan, Hao Zhang, Bin Zhu, Pengyuan Zhou, Xiangnan He. Unsupervised Video Hashing "
                "with Multi-granularity Contextualization and Multi-structure Preservation. ACM Multimedia 2022, "
                "3754-3763.")
    supervised = False
    paper_settings = {"finetune_lr": 3e-4, "finetune_eps": 1e-8, "batch_size": 256, "finetune_epochs": 56}

    def __init__(self, dim: int = 768, length: int = 25, bits: int = 64, hidden: int = 256, expansion: int = 2,
                 dropout: float = 0.5, token_reduction: int = 4, channel_reduction: int = 16,
                 mask_ratio: float = 0.15, videos_per_anchor: float = 45585 / 2000, cluster_weight: float = 0.8,
                 similarity_weight: float = 0.1, quantisation_weight: float = 0.01, quadruplet_weight: float = 0.01,
                 lr_step_epochs: int | None = 20, lr_gamma: float = 0.9, min_lr: float = 1e-4):
        super().__init__()
        sizes = {"dim": dim, "length": length, "bits": bits, "hidden": hidden, "expansion": expansion,
                 "token_reduction": token_reduction, "channel_reduction": channel_reduction}
        for key, value in sizes.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"MCMSH: {key} must be a positive integer, got {value!r}")
        if length < 3 or hidden < 3:
            raise ValueError(f"MCMSH: length and hidden must be at least 3 (middle-range gates pool them to thirds), "
                             f"got length={length}, hidden={hidden}")
        if length // token_reduction < 1 or hidden // channel_reduction < 1:
            raise ValueError(f"MCMSH: token_reduction {token_reduction} / channel_reduction {channel_reduction} "
                             f"exceed length {length} / hidden {hidden}")
        if hidden % (hidden // channel_reduction):
            raise ValueError(f"MCMSH: hidden {hidden} is not divisible into hidden // channel_reduction = "
                             f"{hidden // channel_reduction} groups")
        if not 0 <= dropout < 1:
            raise ValueError(f"MCMSH: dropout must be in [0, 1), got {dropout}")
        if not 0 <= mask_ratio <= 1:
            raise ValueError(f"MCMSH: mask_ratio must be in [0, 1], got {mask_ratio}")
        if not videos_per_anchor > 0:
            raise ValueError(f"MCMSH: videos_per_anchor must be positive, got {videos_per_anchor}")
        weights = {"cluster_weight": cluster_weight, "similarity_weight": similarity_weight,
                   "quantisation_weight": quantisation_weight, "quadruplet_weight": quadruplet_weight}
        for key, value in weights.items():
            if value < 0:
                raise ValueError(f"MCMSH: {key} must be non-negative, got {value}")
        if lr_step_epochs is not None and (not isinstance(lr_step_epochs, int) or lr_step_epochs < 1):
            raise ValueError(f"MCMSH: lr_step_epochs must be a positive integer or None, got {lr_step_epochs!r}")
        self._config = sizes | {"dropout": dropout, "mask_ratio": mask_ratio, "videos_per_anchor": videos_per_anchor}
        self._config |= weights | {"lr_step_epochs": lr_step_epochs, "lr_gamma": lr_gamma, "min_lr": min_lr}
        self.length, self.bits, self.hidden, self.mask_ratio = length, bits, hidden, mask_ratio
        self.videos_per_anchor = videos_per_anchor
        self.weights = {key.removesuffix("_weight"): float(value) for key, value in weights.items()}
        self.project = nn.Linear(dim, hidden)
        self.token_mlp = _MLP(length, expansion, dropout)
        self.token_gates = _Gates(hidden, length, token_reduction, grouped=False)
        self.channel_mlp = _MLP(hidden, expansion, dropout)
        self.channel_gates = _Gates(length, hidden, channel_reduction, grouped=True)
        self.output_gates = _Gates(length, hidden, channel_reduction, grouped=True)
        self.hash = nn.Linear(hidden, bits)
        self.register_buffer("alpha", torch.ones(()))  # √(epoch + 1), saved with the weights
        self._structure: _Structure | None = None
        logger.debug("MCMSH: %s", self._config)

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    # -- network -----------------------------------------------------------------------------------
    def _padded(self, visual: torch.Tensor) -> torch.Tensor:
        if visual.ndim != 3:
            raise ValueError(f"MCMSH: expected videos (B, m, d), got {tuple(visual.shape)}")
        length = visual.shape[1]
        if length > self.length:
            raise ValueError(f"MCMSH: built for {self.length} frames, got {length}")
        return F.pad(visual, (0, 0, 0, self.length - length)) if length < self.length else visual

    def frame_features(self, visual: torch.Tensor) -> torch.Tensor:
        """MC-MLP's frame features ``E`` ``(B, m, H)`` of videos ``(B, m', d)``, m' ≤ m (zero-padded to m)."""
        z = F.relu(self.project(self._padded(visual)))
        z = z + self.token_gates(self.token_mlp(z.transpose(1, 2))).transpose(1, 2)
        z = z + self.channel_gates(self.channel_mlp(z))
        return self.output_gates(z)

    def outputs(self, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h, E)``: the real code ``(B, q)`` in [−1, 1] and the frame features ``(B, m, H)``."""
        frames = self.frame_features(visual)
        return torch.tanh(self.alpha * self.hash(frames)).mean(1), frames

    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, q)`` in [−1, 1]: ``mean_t tanh(α (E_t W_h + β_h))``; ``audio`` is not read."""
        return self.outputs(visual)[0]

    def start_epoch(self, epoch: int) -> None:
        """α = √(epoch + 1) for the coming epoch (the repository's ``set_alpha``)."""
        self.alpha.fill_(math.sqrt(epoch + 1.0))

    # -- training structure ------------------------------------------------------------------------
    def prepare(self, visual: torch.Tensor, audio: torch.Tensor, *, seed: int = 0) -> None:
        """Build the training structure from the training videos ``visual`` (n, m, d) — no labels; ``audio`` unused.

        k-means anchors of the mean-pooled videos (seeded by ``seed``), the anchor graphs of their 3, 4 and 5
        nearest anchors, and the anchors' principal components as cluster targets.
        """
        if visual.ndim != 3 or len(visual) < 2:
            raise ValueError(f"MCMSH: prepare needs at least 2 training videos (n, m, d), got {tuple(visual.shape)}")
        frames = visual.detach().cpu()
        pooled = frames.double().mean(1)
        anchors = min(len(pooled), max(_FAR + 1, round(len(pooled) / self.videos_per_anchor)))
        centres = _kmeans(pooled, anchors, torch.Generator().manual_seed(seed))
        count = min(_FAR, len(centres))
        distances, indices = _nearest_anchors(pooled, centres, count)
        sigmas, graphs, degrees = {}, {}, {}
        for near in (_NEAR, _MIDDLE, _FAR):
            s = min(near, count)
            sigmas[near] = max(distances[:, s - 1].sqrt().mean().item() / math.sqrt(2), 1e-12)
            weights = _anchor_weights(distances[:, :s], sigmas[near])
            rows = torch.arange(len(pooled)).repeat_interleave(s)
            graph = torch.sparse_coo_tensor(torch.stack([rows, indices[:, :s].reshape(-1)]), weights.reshape(-1),
                                            (len(pooled), len(centres)), check_invariants=True).coalesce()
            graphs[near], degrees[near] = graph, torch.sparse.sum(graph, 0).to_dense()
        centred = centres - centres.mean(0)
        _, _, components = torch.linalg.svd(centred, full_matrices=False)
        kept = min(self.hidden, components.shape[0])
        targets = F.pad(centred @ components[:kept].T, (0, self.hidden - kept))
        self._structure = _Structure(frames, centres, targets.float(), sigmas, graphs, degrees)
        logger.info("MCMSH: %d anchors for %d training videos", len(centres), len(pooled))

    def _links(self, pooled: torch.Tensor, near: int) -> torch.Tensor:
        """Bool ``(B, n)``: the anchor graph of ``near`` nearest anchors links each video to each training video."""
        structure = self._structure
        distances, indices = _nearest_anchors(pooled, structure.centres, min(near, len(structure.centres)))
        weights = torch.zeros(len(pooled), len(structure.centres), dtype=torch.float64)
        weights.scatter_(1, indices, _anchor_weights(distances, structure.sigmas[near]))
        scaled = weights / structure.degrees[near].clamp(min=1e-12)
        return torch.sparse.mm(structure.graphs[near], scaled.T).T > _LINK

    def tags(self, visual: torch.Tensor) -> torch.Tensor:
        """Int ``(B, n)`` tags of videos ``(B, m, d)`` against the training videos: 1 similar, 2 dissimilar, 0 none."""
        if self._structure is None:
            raise RuntimeError("MCMSH: no training structure; call prepare(train_visual, train_audio) first "
                               "(MethodModule does before training)")
        pooled = visual.detach().cpu().double().mean(1)
        similar = self._links(pooled, _NEAR)
        middle = self._links(pooled, _FAR) & ~self._links(pooled, _MIDDLE) & ~similar
        return similar.long() + 2 * middle.long()

    def cluster_targets(self, visual: torch.Tensor) -> torch.Tensor:
        """``(B, H)`` targets of videos ``(B, m, d)``: the principal components of their nearest anchor."""
        _, nearest = _nearest_anchors(visual.detach().cpu().double().mean(1), self._structure.centres, 1)
        return self._structure.targets[nearest[:, 0]]

    def mask_frames(self, visual: torch.Tensor) -> torch.Tensor:
        """BERT-style frame masking of videos ``(B, m, d)`` (a new tensor): each frame with probability
        ``mask_ratio`` is zeroed (80 %), replaced by a random training frame (10 %) or kept (10 %)."""
        batch, length, _ = visual.shape
        draw = torch.rand(batch, length, device=visual.device)
        chosen = draw < self.mask_ratio
        within = draw / max(self.mask_ratio, 1e-12)
        zeroed, replaced = chosen & (within < 0.8), chosen & (within >= 0.8) & (within < 0.9)
        frames = self._structure.frames
        videos = torch.randint(len(frames), (batch, length))
        positions = torch.randint(frames.shape[1], (batch, length))
        random_frames = frames[videos, positions].to(visual.device, visual.dtype)
        out = torch.where(replaced[..., None], random_frames, visual)
        return out.masked_fill(zeroed[..., None], 0.0)

    def sample_partners(self, visual: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training-video indices ``(B,)`` of each video's partners — ``pair`` (with ``pair_similar`` ±1),
        ``similar``, ``dissimilar``, ``dissimilar2`` — drawn from the anchor-graph tags."""
        tags = self.tags(visual)
        batch, count = tags.shape

        def draw(tag: int, fallback: torch.Tensor | None = None) -> torch.Tensor:
            allowed = tags == tag
            if fallback is not None:
                allowed = torch.where(allowed.any(1, keepdim=True), allowed, fallback)
            empty = ~allowed.any(1, keepdim=True)
            allowed = torch.where(empty, torch.ones_like(allowed), allowed)
            return torch.multinomial(allowed.double(), 1).squeeze(1)

        untagged = tags == 0
        similar, pair_similar = draw(1), draw(1)
        dissimilar, pair_dissimilar = draw(2, untagged), draw(2, untagged)
        second = draw(2, untagged)
        # v⁻₂ is drawn once more where it is similar to v⁻₁ (the repository's check).
        frames = self._structure.frames
        linked = self._links(frames[dissimilar].double().mean(1), _NEAR)[torch.arange(batch), second]
        second = torch.where(linked, draw(2, untagged), second)
        heads = torch.rand(batch) < 0.5
        return {"pair": torch.where(heads, pair_similar, pair_dissimilar), "pair_similar": heads.double() * 2 - 1,
                "similar": similar, "dissimilar": dissimilar, "dissimilar2": second}

    def losses(self, visual: torch.Tensor) -> dict[str, torch.Tensor]:
        """The four loss terms (unweighted) of unlabelled videos ``visual`` (B, m, d)."""
        self._padded(visual)  # checks the shape; the network pads the frames
        batch = visual.shape[0]
        partners = self.sample_partners(visual)
        frames = self._structure.frames

        def fetch(key: str) -> torch.Tensor:
            return frames[partners[key]].to(visual.device, visual.dtype)

        pair = fetch("pair")
        groups = [self.mask_frames(visual), self.mask_frames(pair), fetch("similar"), fetch("dissimilar"),
                  fetch("dissimilar2")]
        codes, features = self.outputs(torch.cat(groups))
        h, h_pair, h_similar, h_dissimilar, h_dissimilar2 = codes.split(batch)
        pooled = features[: 2 * batch].mean(1)
        targets = torch.cat([self.cluster_targets(visual), self.cluster_targets(pair)]).to(pooled)
        cluster = (pooled - targets).square().sum() / (self.hidden * batch)
        y = partners["pair_similar"].to(codes)
        similarity = (y - (h * h_pair).sum(1) / self.bits).square().mean()
        both = torch.cat([h, h_pair])
        quantisation = (both - straight_through_sign(both)).square().sum() / (batch * self.bits)
        positive = (h - h_similar).square().sum(1)
        quadruplet = (F.relu(self.bits / 4 + positive - (h - h_dissimilar).square().sum(1))
                      + F.relu(self.bits / 64 + positive - (h_dissimilar - h_dissimilar2).square().sum(1))).mean()
        return {"cluster": cluster, "similarity": similarity, "quantisation": quantisation, "quadruplet": quadruplet}

    def training_loss(self, visual: torch.Tensor, audio: torch.Tensor, *, tau: float = 0.0) -> torch.Tensor:
        """MCMSH's loss of unlabelled videos ``visual`` (B, m, d): 0.8 cluster + 0.1 similarity + 0.01 quantisation
        + 0.01 quadruplet (the weights of the config). ``tau`` is not used; ``audio`` is not read."""
        terms = self.losses(visual)
        return sum(self.weights[key] * value for key, value in terms.items())

    def lr_scheduler(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler | None:
        """×``lr_gamma`` every ``lr_step_epochs`` epochs, never below ``min_lr``: :func:`.base.step_decay`."""
        return step_decay(optimizer, *(self._config[key] for key in ("lr_step_epochs", "lr_gamma", "min_lr")))
