"""ConMH, a self-supervised (label-free) video-hashing comparator of the paper's Table 2 (line 7).

Yuting Wang, Jinpeng Wang, Bin Chen, Ziyun Zeng, Shu-Tao Xia. *Contrastive Masked Autoencoders for
Self-Supervised Video Hashing.* AAAI 2023, 2733–2741 (reference [47] of the AV-NAS paper). The ConMH paper's
full text was not at hand: this is written from its abstract and its Figure 2 (architecture) as published,
the AV-NAS paper's account of it, and the authors' public repository (github.com/huangmozhi9527/ConMH: model,
loss, masking, configs and training loop read, none copied). Every number below is the repository's.

ConMH was designed for frame features of the visual stream only (VGG-16 / ResNet-50 frames there). Here it
reads the visual features (``(B, m, d)``, CLIP in the AV-NAS data); **the audio input is ignored**.

Network (per video of m frame features ``x_1 … x_m``)::

    t_i = W_e x_i + P_e[i]                           frame tokens, fixed sinusoidal positions P_e
    H   = Head(LN(Enc(t_S)))                          pre-LN Transformer on the frames S it sees
    c_i = Bin(LN_q(W_h h_i))    for i in S            one code per seen frame, c_i ∈ {−1, +1}^q
    f   = mean_{i ∈ S} c_i                            the video's code in [−1, 1]; b = sign(f)

``Bin`` is sign in the forward pass and the identity inside [−1, 1] (zero outside) in the backward pass (a
hard-tanh straight-through estimator). At retrieval time S holds every frame.

Training (no labels): per video, one random permutation of its frames gives two views, the first ``k`` and
the last ``k`` frames of it visible (``k = m − ⌊ρ m⌋``; disjoint when ``2k ≤ m``), the rest masked. For each
view a decoder rebuilds the masked frames from the view's codes alone::

    D = Dec([W_c c_i + P_d[i] for i ∈ S;  μ + P_d[j] for j ∉ S])      μ: a learned mask token
    x̂_j = W_o LN(D_j)  for the masked j;   L_rec = mean_j ‖x̂_j − x_j‖²

and the two views' codes are pulled together against the other videos of the batch by the debiased
contrastive loss (Chuang et al., NeurIPS 2020) of the L2-normalised ``f¹, f²`` with temperature ``t`` and
class prior ``τ⁺``, over the 2B − 2 other codes ``u`` of the batch::

    pos = e^{f¹·f²/t},   N = 2B − 2,   N_g = max( (Σ_u e^{f·u/t} − τ⁺ N pos) / (1 − τ⁺),  N e^{−1/t} )
    L = L_rec(view 1) + L_rec(view 2) + a · mean( −log( pos / (pos + N_g) ) )

Sizes (the repository's ``small`` Transformer): encoder 12 pre-LN blocks of width 256 with 6 heads (head
width ⌊256/6⌋ = 42, so a 252-wide attention), MLP ratio 4, GELU, LayerNorm ε 1e-6, query and value biases
but no key bias; decoder 2 such blocks of width 192 with 3 heads. Linear weights of encoder and decoder are
Xavier-uniform with zero biases, the mask token a normal of std 0.02 cut at ±0.02, the hash layer and the
code projection PyTorch's defaults; no dropout.

Settings, FCVID's config (25 frames, as in the AV-NAS data): ρ = 0.75, a = 1, τ⁺ = 0.1, t = 0.5, Adam
lr 1e-4 (ε 1e-8, no weight decay) × 0.9 every 20 epochs down to 1e-5, batch 512, 805 epochs. The
ActivityNet config differs in ρ = 0.5, a = 0.2, τ⁺ = 0.05, batch 128, 505 epochs: pass
``{"mask_ratio": 0.5, "contrastive_weight": 0.2, "tau_plus": 0.05}`` as ``RunSettings.extra["method"]``.

Adapted, and why:

* Features: d comes from the data (768-d CLIP frames in the AV-NAS data; 4096-d VGG on FCVID and 2048-d
  ResNet-50 on ActivityNet in ConMH's). #Params at m = 25, q = 64: 10.75 M at d = 768, 11.33 M at
  d = 2048 — the AV-NAS paper's Table 2 gives 11.3 M, i.e. it counts ConMH on 2048-d frame features.
* One set of defaults serves both datasets (FCVID's, see above); the repository has one config per dataset.
* The model kept is the best val-mAP epoch, as for every row; the repository keeps the weights of epoch
  ``num_epochs − 6`` and reports test mAP periodically, with no validation split.
* ``sign(0) = +1`` (the project's :func:`~avnas_nni.codes.sign_codes`); the repository's ``torch.sign`` gives
  0, which at its odd m = 25 never occurs (a mean of 25 values ±1 is never 0), but can at an even m.
* The temperature is the run's ``tau``; the Table 2 row and the paper settings set ConMH's 0.5.
* The masks come from torch's generator, which the project's evaluator seeds per (seed, epoch, batch), so a
  resumed run repeats them; the repository draws them in its data loader from Python's ``random``.

Not reproduced: whether the ConMH paper's text states the same hyper-parameters as the released configs
(the paper was not available, so the configs stand in for it); ConMH's own YFCC setting (not an AV-NAS
dataset); its own features and evaluation protocol (the AV-NAS table retrains it on AV-NAS's features and
splits, as here).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avnas_nni.methods.base import HashingMethod, step_decay
from avnas_nni.methods.common import binarise, sinusoid_table

__all__ = ["ConMH", "debiased_contrastive_loss"]

logger = logging.getLogger(__name__)

#: LayerNorm ε of every block, the final norms and the hash layer's norm (PyTorch's default there).
_BLOCK_EPS = 1e-6


def debiased_contrastive_loss(first: torch.Tensor, second: torch.Tensor, *, tau: float,
                              tau_plus: float) -> torch.Tensor:
    """Debiased contrastive loss (Chuang et al., NeurIPS 2020) of two views ``(B, q)`` of the same B items.

    Each of the 2B vectors has the other view of its item as positive and the 2B − 2 others as negatives,
    whose sum is debiased by the class prior ``tau_plus`` (the formula: see the module docstring).

    Parameters
    ----------
    first, second : torch.Tensor
        ``(B, q)`` codes of the two views, row i of both from item i; L2-normalised here.
    tau : float
        Temperature t.
    tau_plus : float
        Prior probability τ⁺ that a negative shares the anchor's class, in [0, 1).

    Returns
    -------
    torch.Tensor
        The scalar mean loss (0 for B = 1: no negatives).
    """
    if first.ndim != 2 or first.shape != second.shape:
        raise ValueError(f"debiased_contrastive_loss: expected two (B, q) views, got {tuple(first.shape)} "
                         f"and {tuple(second.shape)}")
    if not 0 <= tau_plus < 1:
        raise ValueError(f"debiased_contrastive_loss: tau_plus must be in [0, 1), got {tau_plus}")
    batch = first.shape[0]
    both = F.normalize(torch.cat([first, second]), dim=1)
    similarity = torch.exp(both @ both.T / tau)  # (2B, 2B)
    partner = torch.arange(2 * batch, device=both.device).roll(batch)
    positive = similarity[torch.arange(2 * batch, device=both.device), partner]
    negatives = similarity.sum(1) - similarity.diagonal() - positive
    n = 2 * batch - 2
    debiased = ((negatives - tau_plus * n * positive) / (1 - tau_plus)).clamp(min=n * math.exp(-1 / tau))
    return -torch.log(positive / (positive + debiased)).mean()


class _Attention(nn.Module):
    """Multi-head self-attention with ``heads × ⌊dim/heads⌋`` inner width, query/value biases, no key bias."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, inner = heads, heads * (dim // heads)
        self.qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.q_bias, self.v_bias = nn.Parameter(torch.zeros(inner)), nn.Parameter(torch.zeros(inner))
        self.proj = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        q, k, v = F.linear(x, self.qkv.weight, bias).view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v)  # scale 1/√(head width), as in the code
        return self.proj(attended.transpose(1, 2).reshape(batch, length, -1))


class _Block(nn.Module):
    """Pre-LN Transformer block: ``x + Attn(LN x)``, then ``x + MLP(LN x)`` with a GELU MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.attention_norm = nn.LayerNorm(dim, eps=_BLOCK_EPS)
        self.attention = _Attention(dim, heads)
        self.mlp_norm = nn.LayerNorm(dim, eps=_BLOCK_EPS)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x))
        return x + self.mlp(self.mlp_norm(x))


def _xavier(modules: Iterable[nn.Module]) -> None:
    """Xavier-uniform weights and zero biases for the linear layers among ``modules``."""
    for module in modules:
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def _stack(dim: int, depth: int, heads: int, mlp_ratio: float) -> nn.Sequential:
    """``depth`` blocks, Xavier-initialised (LayerNorms: PyTorch's ones and zeros)."""
    blocks = nn.Sequential(*(_Block(dim, heads, mlp_ratio) for _ in range(depth)))
    _xavier(blocks.modules())
    return blocks


class ConMH(HashingMethod):
    """ConMH (Wang et al., AAAI 2023), visual frames only: see the module docstring for network, loss, sources.

    Parameters
    ----------
    dim : int
        Frame feature size d (the visual features'; the audio input is ignored).
    length : int
        Frames per video m (25 in the AV-NAS data and ConMH's FCVID config): the position tables' size.
    bits : int
        Code length q.
    hidden, depth, heads : int
        Encoder width (256), blocks (12) and heads (6).
    decoder_hidden, decoder_depth, decoder_heads : int
        Decoder width (192), blocks (2) and heads (3).
    mlp_ratio : float
        MLP width over block width (4).
    mask_ratio : float
        Share ρ of the frames each training view hides (0.75; ActivityNet config 0.5).
    contrastive_weight : float
        Weight a of the contrastive term against the two reconstruction terms (1; ActivityNet 0.2).
    tau_plus : float
        Class prior τ⁺ of the debiased contrastive loss (0.1; ActivityNet 0.05).
    lr_step_epochs : int or None
        The learning rate is multiplied by ``lr_gamma`` every this many epochs (20); None: constant.
    lr_gamma, min_lr : float
        Decay factor (0.9) and floor (1e-5) of that schedule.
    """

    name = "conmh"
    citation = ("Yuting Wang, Jinpeng Wang, Bin Chen, Ziyun Zeng, Shu-Tao Xia. Contrastive Masked Autoencoders for "
                "Self-Supervised Video Hashing. AAAI 2023, 2733-2741.")
    supervised = False
    paper_settings = {"finetune_lr": 1e-4, "finetune_eps": 1e-8, "batch_size": 512, "finetune_epochs": 805,
                      "tau": 0.5}

    def __init__(self, dim: int = 768, length: int = 25, bits: int = 64, hidden: int = 256, depth: int = 12,
                 heads: int = 6, decoder_hidden: int = 192, decoder_depth: int = 2, decoder_heads: int = 3,
                 mlp_ratio: float = 4.0, mask_ratio: float = 0.75, contrastive_weight: float = 1.0,
                 tau_plus: float = 0.1, lr_step_epochs: int | None = 20, lr_gamma: float = 0.9,
                 min_lr: float = 1e-5):
        super().__init__()
        for label, value in (("dim", dim), ("length", length), ("bits", bits), ("hidden", hidden),
                             ("depth", depth), ("heads", heads), ("decoder_hidden", decoder_hidden),
                             ("decoder_depth", decoder_depth), ("decoder_heads", decoder_heads)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ConMH: {label} must be a positive integer, got {value!r}")
        if heads > hidden or decoder_heads > decoder_hidden:
            raise ValueError(f"ConMH: more heads than channels ({heads} for {hidden}, {decoder_heads} for "
                             f"{decoder_hidden})")
        if not 0 < mask_ratio < 1:
            raise ValueError(f"ConMH: mask_ratio must be in (0, 1), got {mask_ratio}")
        if not 0 <= tau_plus < 1:
            raise ValueError(f"ConMH: tau_plus must be in [0, 1), got {tau_plus}")
        if lr_step_epochs is not None and (not isinstance(lr_step_epochs, int) or lr_step_epochs < 1):
            raise ValueError(f"ConMH: lr_step_epochs must be a positive integer or None, got {lr_step_epochs!r}")
        self._config = {"dim": dim, "length": length, "bits": bits, "hidden": hidden, "depth": depth,
                        "heads": heads, "decoder_hidden": decoder_hidden, "decoder_depth": decoder_depth,
                        "decoder_heads": decoder_heads, "mlp_ratio": mlp_ratio, "mask_ratio": mask_ratio,
                        "contrastive_weight": contrastive_weight, "tau_plus": tau_plus,
                        "lr_step_epochs": lr_step_epochs, "lr_gamma": lr_gamma, "min_lr": min_lr}
        self.mask_ratio, self.contrastive_weight, self.tau_plus = mask_ratio, float(contrastive_weight), tau_plus
        # Encoder: frame embedding, fixed positions, blocks, norm and head, then the hash layer.
        self.embed = nn.Linear(dim, hidden)
        self.register_buffer("encoder_position", sinusoid_table(length, hidden), persistent=False)
        self.encoder = _stack(hidden, depth, heads, mlp_ratio)
        self.encoder_norm = nn.LayerNorm(hidden, eps=_BLOCK_EPS)
        self.encoder_head = nn.Linear(hidden, hidden)
        self.hash = nn.Linear(hidden, bits)  # PyTorch's default initialisation, as in the code
        self.hash_norm = nn.LayerNorm(bits)
        # Decoder: codes to its width, a mask token, fixed positions, blocks, norm and frame head.
        self.code_to_decoder = nn.Linear(bits, decoder_hidden, bias=False)
        self.mask_token = nn.Parameter(torch.empty(decoder_hidden))
        nn.init.trunc_normal_(self.mask_token, std=0.02, a=-0.02, b=0.02)
        self.register_buffer("decoder_position", sinusoid_table(length, decoder_hidden), persistent=False)
        self.decoder = _stack(decoder_hidden, decoder_depth, decoder_heads, mlp_ratio)
        self.decoder_norm = nn.LayerNorm(decoder_hidden, eps=_BLOCK_EPS)
        self.decoder_head = nn.Linear(decoder_hidden, dim)
        _xavier([self.embed, self.encoder_head, self.decoder_head])
        logger.debug("ConMH: %s", self._config)

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def _check_frames(self, visual: torch.Tensor) -> int:
        if visual.ndim != 3:
            raise ValueError(f"ConMH: expected videos (B, m, d), got {tuple(visual.shape)}")
        length = visual.shape[1]
        if length > self.encoder_position.shape[0]:
            raise ValueError(f"ConMH: built for {self.encoder_position.shape[0]} frames, got {length}")
        return length

    def frame_codes(self, visual: torch.Tensor, seen: torch.Tensor | None = None) -> torch.Tensor:
        """Per-frame codes ``(B, k, q)`` in {−1, +1} of the frames ``seen`` (bool ``(B, m)``, k per row; None: all)."""
        length = self._check_frames(visual)
        tokens = self.embed(visual) + self.encoder_position[:length]
        if seen is not None:
            tokens = tokens[seen].view(visual.shape[0], -1, tokens.shape[-1])
        hidden = self.encoder_head(self.encoder_norm(self.encoder(tokens)))
        return binarise(self.hash_norm(self.hash(hidden)))

    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, q)`` in [−1, 1]: the mean of every frame's code; ``audio`` is not read."""
        return self.frame_codes(visual).mean(1)

    def reconstruct(self, codes: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        """The decoder's features ``(B, m − k, d)`` of the frames not ``seen``, from the seen frames' codes."""
        batch, length = seen.shape
        position = self.decoder_position[:length].expand(batch, -1, -1)
        visible = self.code_to_decoder(codes) + position[seen].view(batch, codes.shape[1], -1)
        masked = self.mask_token + position[~seen].view(batch, length - codes.shape[1], -1)
        decoded = self.decoder(torch.cat([visible, masked], dim=1))[:, codes.shape[1]:]
        return self.decoder_head(self.decoder_norm(decoded))

    def views(self, batch: int, length: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Two ``(B, m)`` bool masks of seen frames: first and last ``m − ⌊ρ m⌋`` of one random permutation."""
        hidden = int(self.mask_ratio * length)
        if not 0 < hidden < length:
            raise ValueError(f"ConMH: mask_ratio {self.mask_ratio} hides {hidden} of {length} frames; "
                             "each view must hide some and see some")
        order = torch.rand(batch, length, device=device).argsort(dim=1)
        seen = length - hidden
        masks = []
        for chosen in (order[:, :seen], order[:, length - seen:]):
            mask = torch.zeros(batch, length, dtype=torch.bool, device=device)
            masks.append(mask.scatter(1, chosen, True))
        return masks[0], masks[1]

    def training_loss(self, visual: torch.Tensor, audio: torch.Tensor, *, tau: float = 0.5) -> torch.Tensor:
        """ConMH's loss of unlabelled videos ``visual`` (B, m, d): two masked reconstructions + a · DCL."""
        length = self._check_frames(visual)
        batch, dim = visual.shape[0], visual.shape[2]
        reconstruction, pooled = visual.new_zeros(()), []
        for seen in self.views(batch, length, visual.device):
            codes = self.frame_codes(visual, seen)
            target = visual[~seen].view(batch, -1, dim)
            reconstruction = reconstruction + F.mse_loss(self.reconstruct(codes, seen), target)
            pooled.append(codes.mean(1))
        contrastive = debiased_contrastive_loss(pooled[0], pooled[1], tau=tau, tau_plus=self.tau_plus)
        return reconstruction + self.contrastive_weight * contrastive

    def lr_scheduler(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler | None:
        """×``lr_gamma`` every ``lr_step_epochs`` epochs, never below ``min_lr``: :func:`.base.step_decay`."""
        return step_decay(optimizer, *(self._config[key] for key in ("lr_step_epochs", "lr_gamma", "min_lr")))
