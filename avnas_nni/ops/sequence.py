"""M cell candidates (sequence modelling, paper Table 1): (batch, m, d) -> (batch, m, d).

FFN, MLP, Conv (kernel k a setting), SelfAttention, SelfSSM and Skip. SelfAttention is also the T
cell's SelfAttention candidate.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from . import scan as _scan
from .attention import MultiheadAttention
from .dropout import Dropout
from .mamba import CausalDepthwiseConv1d, init_dt_proj_, s4d_real_a_log
from .registry import ParameterFreeOp, register

__all__ = ["FFN", "MLP", "Conv", "SelfAttention", "SelfSSM", "Skip", "resolve_num_heads"]

logger = logging.getLogger(__name__)

DEFAULT_NUM_HEADS = 12


def resolve_num_heads(dim: int, num_heads: int | None, owner: str) -> int:
    """The attention head count for width ``dim``.

    Parameters
    ----------
    dim : int
        Embedding width.
    num_heads : int or None
        None: 12 when 12 divides dim, else the largest divisor of dim that is <= 12 (logged at debug).
        An int must divide dim.
    owner : str
        Operator name for the error message.

    Returns
    -------
    int
    """
    if num_heads is None:
        heads = max(h for h in range(1, DEFAULT_NUM_HEADS + 1) if dim % h == 0)
        if heads != DEFAULT_NUM_HEADS:
            logger.debug("%s: %d heads do not divide dim=%d, using %d heads", owner, DEFAULT_NUM_HEADS, dim, heads)
        return heads
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1 or dim % num_heads:
        raise ValueError(f"{owner}: num_heads={num_heads!r} does not divide dim={dim}")
    return num_heads


@register("M", "Skip")
@register("U", "Skip")
class Skip(ParameterFreeOp):
    """Identity (M and U cells)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return x unchanged."""
        return x


@register("M", "FFN")
class FFN(nn.Module):
    """Feed-forward ``FC_d ∘ Drop ∘ ReLU ∘ FC_4d``.

    Parameters
    ----------
    dim : int
        Width d.
    dropout : float
        Dropout after the ReLU (paper: 0.1).
    """

    def __init__(self, dim: int, *, dropout: float = 0.1) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.dropout = Dropout(dropout)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, m, d) -> (batch, m, d)."""
        return self.fc2(self.dropout.after_relu(self.fc1(x)))


@register("M", "MLP")
class MLP(nn.Module):
    """``Drop ∘ FC_d``.

    Parameters
    ----------
    dim : int
        Width d.
    dropout : float
        Dropout after the linear map (paper: 0.1).
    """

    def __init__(self, dim: int, *, dropout: float = 0.1) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, dim)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, m, d) -> (batch, m, d)."""
        return self.dropout(self.fc(x))


@register("M", "Conv")
class Conv(nn.Module):
    """Conv_k: depthwise causal Conv1d over time, with bias (as Mamba's short conv).

    Output t sees inputs t-k+1..t; the input is padded k-1 steps on the left, so every k keeps the
    length m.

    Parameters
    ----------
    dim : int
        Width d (channels = groups = d).
    kernel_size : int
        k; the paper's space uses 3, 4 and 5.
    """

    def __init__(self, dim: int, *, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = CausalDepthwiseConv1d(dim, kernel_size, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, m, d) -> (batch, m, d)."""
        return self.conv(x.transpose(1, 2)).transpose(1, 2)


@register("M", "SelfAttention")
@register("T", "SelfAttention")
class SelfAttention(nn.Module):
    """Multi-head self-attention MHA(X, X, X); only the output is returned.

    Parameters
    ----------
    dim : int
        Width d.
    num_heads : int or None
        Heads; None = 12, or the largest divisor of d below 12 (see :func:`resolve_num_heads`).
    attn_dropout : float
        Dropout on the attention weights (0: the paper names none).
    """

    def __init__(self, dim: int, *, num_heads: int | None = None, attn_dropout: float = 0.0) -> None:
        super().__init__()
        heads = resolve_num_heads(dim, num_heads, type(self).__name__)
        self.attn = MultiheadAttention(dim, heads, dropout=attn_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, m, d) -> (batch, m, d)."""
        return self.attn(x, x, x, need_weights=False)[0]


@register("M", "SelfSSM")
class SelfSSM(nn.Module):
    """The bare S6 selective scan (no in/out projections, conv or gate), as in the authors' code.

    Δ, B, C are read from x itself by ``x_proj``; Δ goes through ``dt_proj`` and softplus (its bias as
    delta_bias); ``A = -exp(A_log)``; ``D`` adds the skip term D·x.

    Parameters
    ----------
    dim : int
        Width d (the scan runs over d channels).
    d_state : int
        State size N.
    dt_rank : int
        Rank of Δ.
    """

    def __init__(self, dim: int, *, d_state: int = 16, dt_rank: int = 4) -> None:
        super().__init__()
        for label, value in (("d_state", d_state), ("dt_rank", dt_rank)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SelfSSM: {label} must be a positive int, got {value!r}")
        self.d_state = d_state
        self.dt_rank = dt_rank
        self.x_proj = nn.Linear(dim, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, dim, bias=True)
        init_dt_proj_(self.dt_proj, dt_rank)
        self.A_log = nn.Parameter(s4d_real_a_log(dim, d_state))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(dim))
        self.D._no_weight_decay = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, m, d) -> (batch, m, d)."""
        dt, B, C = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        y = _scan.selective_scan(
            x.transpose(1, 2),
            F.linear(dt, self.dt_proj.weight).transpose(1, 2),
            -torch.exp(self.A_log),
            B.transpose(1, 2),
            C.transpose(1, 2),
            self.D,
            delta_bias=self.dt_proj.bias,
            delta_softplus=True,
        )
        return y.transpose(1, 2)
