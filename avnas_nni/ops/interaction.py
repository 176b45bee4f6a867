"""I cell candidates (cross-modal interaction, paper Table 1): CrossAttention and CrossSSM.

Both take ``forward(x, y)``: x is the modality being transformed (attention queries; the scanned
sequence of CrossSSM), y the other modality that conditions it. Output (batch, m, d), x's length.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from . import scan as _scan
from .attention import MultiheadAttention
from .mamba import CausalDepthwiseConv1d, init_dt_proj_, s4d_real_a_log
from .registry import register
from .sequence import resolve_num_heads

__all__ = ["CrossAttention", "CrossSSM"]

logger = logging.getLogger(__name__)


@register("I", "CrossAttention")
class CrossAttention(nn.Module):
    """Multi-head cross-attention MHA(X, Y, Y): queries from x, keys and values from y.

    Parameters
    ----------
    dim : int
        Width d.
    num_heads : int or None
        Heads; None = 12, or the largest divisor of d below 12.
    attn_dropout : float
        Dropout on the attention weights.
    """

    def __init__(self, dim: int, *, num_heads: int | None = None, attn_dropout: float = 0.0) -> None:
        super().__init__()
        heads = resolve_num_heads(dim, num_heads, type(self).__name__)
        self.attn = MultiheadAttention(dim, heads, dropout=attn_dropout)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(batch, m, d) queries, (batch, m', d) context -> (batch, m, d)."""
        return self.attn(x, y, y, need_weights=False)[0]


@register("I", "CrossSSM")
class CrossSSM(nn.Module):
    """CrossMamba (paper Fig. 3, Eq. 15-32): a bidirectional selective scan of X controlled by Y.

    With ``LN`` a LayerNorm per modality and inner width ``expand * d``::

        c_x      = Conv1d_x(Linear_x(LN(X)))                       (15)
        g_x      = Linear_x(LN(X))       the SiLU-gate branch       (16)
        cRes_x   = Linear_x(LN(X))                                 (17)
        c_y      = Conv1d_y(Linear_y(LN(Y)))                       (18)
        Δ, B, C  = linear maps of c_y (x_proj, then dt_proj and softplus for Δ)   (19-21)
        z        = scan(c_x; A1, Δ, B, C)                          (22, 24-26)
        z'       = scan(reverse(c_x); A2, Δ, B, C)                 (23, 27-28)
        out      = Linear_F((z + reverse(z') + cRes_x) * SiLU(g_x))  (31-32)

    The three X branches of Eq. 15-17 are one ``in_proj_x`` (d -> 3 * inner) split in three; the convs
    are depthwise, causal, kernel ``d_conv``, with no activation after them; there is no skip term D
    (Eq. 25-28 have none) and no residual around the block.

    Reading of Eq. 27 (literal, as written; the authors' code does the same): the backward scan runs
    over the time-reversed c_x but with the *same*, not reversed, Δ, B, C sequences, so at its step s
    it consumes c_x[m-1-s] under Y's control at time s. Eq. 16 writes a SiLU inside cSiLU_x and Eq. 32
    another around it; Fig. 3 and the authors' code apply one, and so does this class.

    Parameters
    ----------
    dim : int
        Width d of X, Y and the output.
    d_state : int
        State size N.
    d_conv : int
        Kernel of the two causal convs.
    expand : float
        Inner width = int(expand * d).
    dt_rank : int
        Rank of Δ (as SelfSSM).
    bias : bool
        Bias in the input and output projections.
    """

    def __init__(
        self,
        dim: int,
        *,
        d_state: int = 16,
        d_conv: int = 4,
        expand: float = 1,
        dt_rank: int = 4,
        bias: bool = False,
    ) -> None:
        super().__init__()
        inner = int(expand * dim)
        if inner < 1:
            raise ValueError(f"CrossSSM: expand={expand!r} gives inner width {inner}, expected >= 1")
        for label, value in (("d_state", d_state), ("dt_rank", dt_rank)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"CrossSSM: {label} must be a positive int, got {value!r}")
        self.d_inner = inner
        self.d_state = d_state
        self.dt_rank = dt_rank
        self.norm_x = nn.LayerNorm(dim)
        self.norm_y = nn.LayerNorm(dim)
        self.in_proj_x = nn.Linear(dim, 3 * inner, bias=bias)
        self.in_proj_y = nn.Linear(dim, inner, bias=bias)
        self.conv1d_x = CausalDepthwiseConv1d(inner, d_conv, bias=True)
        self.conv1d_y = CausalDepthwiseConv1d(inner, d_conv, bias=True)
        # Linear_B, Linear_C and the first stage of Linear_Δ, all reading c_y
        self.x_proj = nn.Linear(inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, inner, bias=True)
        init_dt_proj_(self.dt_proj, dt_rank)
        self.A1_log = nn.Parameter(s4d_real_a_log(inner, d_state))
        self.A2_log = nn.Parameter(s4d_real_a_log(inner, d_state))
        self.A1_log._no_weight_decay = True
        self.A2_log._no_weight_decay = True
        self.out_proj = nn.Linear(inner, dim, bias=bias)  # Linear_F

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(batch, m, d) scanned modality, (batch, m, d) controlling modality -> (batch, m, d)."""
        if x.shape[:2] != y.shape[:2]:
            raise ValueError(f"CrossSSM: x and y must share (batch, m), got {tuple(x.shape)} and {tuple(y.shape)}")
        conv_in, gate, residual = self.in_proj_x(self.norm_x(x)).chunk(3, dim=-1)
        c_x = self.conv1d_x(conv_in.transpose(1, 2))  # (batch, inner, m)
        c_y = self.conv1d_y(self.in_proj_y(self.norm_y(y)).transpose(1, 2))
        dt, B, C = torch.split(self.x_proj(c_y.transpose(1, 2)), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.linear(dt, self.dt_proj.weight).transpose(1, 2)  # (batch, inner, m); bias as delta_bias
        B = B.transpose(1, 2)
        C = C.transpose(1, 2)
        z_forward = _scan.selective_scan(
            c_x, delta, -torch.exp(self.A1_log), B, C, delta_bias=self.dt_proj.bias, delta_softplus=True
        )
        z_backward = _scan.selective_scan(
            c_x.flip(-1),
            delta,
            -torch.exp(self.A2_log),
            B,
            C,
            delta_bias=self.dt_proj.bias,
            delta_softplus=True,
        )
        mixed = (z_forward + z_backward.flip(-1)).transpose(1, 2)  # Z of Eq. 31, (batch, m, inner)
        return self.out_proj((mixed + residual) * F.silu(gate))
