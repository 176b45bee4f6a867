"""The Mamba block (T = SelfSSM) and the initialisations the state-space operators share.

:class:`Mamba` has exactly the parameter names and shapes of mamba-ssm's
``mamba_ssm.modules.mamba_simple.Mamba`` (upstream, without any d_inner cap), so that module's state
dict loads into it with ``strict=True``. Its forward is the non-fused path of that module (no
inference cache) and runs the package's :func:`~avnas_nni.ops.scan.selective_scan`.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

from . import scan as _scan
from ._numba import serial_cpu
from .conv_cpu import causal_conv_fused, fused_conv_available
from .registry import register

__all__ = ["CausalDepthwiseConv1d", "Mamba", "ResidualMamba", "init_dt_proj_", "s4d_real_a_log"]

logger = logging.getLogger(__name__)


class CausalDepthwiseConv1d(nn.Conv1d):
    """Depthwise Conv1d over time that is causal: output t sees inputs t-k+1..t only.

    Laid out like Mamba's ``conv1d`` (``padding=k-1`` on both sides, the first L outputs kept, which
    equals padding k-1 on the left), so even kernels keep the length and the state dict matches Mamba's.

    Parameters
    ----------
    channels : int
        Channels (groups = channels).
    kernel_size : int
        Kernel length k >= 1.
    bias : bool
        Learn a per-channel bias.
    """

    def __init__(self, channels: int, kernel_size: int, bias: bool = True) -> None:
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
            raise ValueError(f"CausalDepthwiseConv1d: kernel_size must be an int >= 1, got {kernel_size!r}")
        super().__init__(channels, channels, kernel_size, groups=channels, padding=kernel_size - 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, channels, L) -> (batch, channels, L).

        On CPU with one torch thread (:func:`~avnas_nni.ops._numba.serial_cpu`) and float32/float64 input, the
        numba kernels of :mod:`.conv_cpu` compute it (first-order gradients); otherwise torch's Conv1d.
        """
        if (x.dim() == 3 and x.dtype in (torch.float32, torch.float64) and x.dtype == self.weight.dtype
                and serial_cpu(x) and fused_conv_available()):
            return causal_conv_fused(x, self.weight, self.bias)
        return super().forward(x)[..., : x.shape[-1]]


def init_dt_proj_(
    dt_proj: nn.Linear,
    dt_rank: int,
    dt_min: float = 0.001,
    dt_max: float = 0.1,
    dt_init: str = "random",
    dt_scale: float = 1.0,
    dt_init_floor: float = 1e-4,
) -> None:
    """Mamba's initialisation of the Δ projection, in place.

    The weight is uniform in ±dt_scale/sqrt(dt_rank) (or that constant), and the bias is set so that
    ``softplus(bias)`` is log-uniform in [dt_min, dt_max] (floored at dt_init_floor).

    Parameters
    ----------
    dt_proj : torch.nn.Linear
        The dt_rank -> channels projection, with bias.
    dt_rank : int
        Its input width.
    dt_min, dt_max, dt_init_floor : float
        Range and floor of the initial step sizes.
    dt_init : {"random", "constant"}
        Weight initialisation.
    dt_scale : float
        Scale of the weight initialisation.
    """
    std = dt_rank**-0.5 * dt_scale
    with torch.no_grad():
        if dt_init == "constant":
            dt_proj.weight.fill_(std)
        elif dt_init == "random":
            dt_proj.weight.uniform_(-std, std)
        else:
            raise ValueError(f"init_dt_proj_: dt_init must be 'random' or 'constant', got {dt_init!r}")
        channels = dt_proj.out_features
        dt = torch.exp(torch.rand(channels) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(
            min=dt_init_floor
        )
        # inverse of softplus, so that softplus(bias) == dt
        dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
    dt_proj.bias._no_reinit = True  # mamba-ssm's marker: generic re-initialisers must skip this bias


def s4d_real_a_log(channels: int, d_state: int) -> torch.Tensor:
    """S4D-real initialisation of ``A_log``: row ``log(1..d_state)`` for every channel, float32.

    Parameters
    ----------
    channels : int
    d_state : int

    Returns
    -------
    torch.Tensor
        (channels, d_state); the scan uses ``A = -exp(A_log)``.
    """
    return torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(channels, 1).contiguous()


def _positive_int(owner: str, label: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: {label} must be a positive int, got {value!r}")
    return value


class Mamba(nn.Module):
    """Mamba block with mamba-ssm ``mamba_simple.Mamba``'s parameters: (batch, L, d_model) -> same.

    Parameters
    ----------
    d_model : int
        Model width.
    d_state : int
        State size N.
    d_conv : int
        Causal depthwise conv kernel.
    expand : float
        d_inner = int(expand * d_model).
    dt_rank : int or "auto"
        Rank of Δ; "auto" = ceil(d_model / 16).
    dt_min, dt_max, dt_init, dt_scale, dt_init_floor
        Δ initialisation, see :func:`init_dt_proj_`.
    conv_bias : bool
        Bias in ``conv1d``.
    bias : bool
        Bias in ``in_proj`` and ``out_proj``.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: float = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.d_model = _positive_int("Mamba", "d_model", d_model)
        self.d_state = _positive_int("Mamba", "d_state", d_state)
        self.d_conv = _positive_int("Mamba", "d_conv", d_conv)
        self.expand = expand
        self.d_inner = int(expand * d_model)
        if self.d_inner < 1:
            raise ValueError(f"Mamba: expand={expand!r} gives d_inner={self.d_inner}, expected >= 1")
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else _positive_int("Mamba", "dt_rank", dt_rank)

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.conv1d = CausalDepthwiseConv1d(self.d_inner, d_conv, bias=conv_bias)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        init_dt_proj_(self.dt_proj, self.dt_rank, dt_min, dt_max, dt_init, dt_scale, dt_init_floor)
        self.A_log = nn.Parameter(s4d_real_a_log(self.d_inner, d_state))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.D._no_weight_decay = True
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(batch, L, d_model) -> (batch, L, d_model)."""
        xz = self.in_proj(hidden_states).transpose(1, 2)  # (batch, 2*d_inner, L)
        x, z = xz.chunk(2, dim=1)
        x = F.silu(self.conv1d(x))
        x_dbl = self.x_proj(x.transpose(1, 2))  # (batch, L, dt_rank + 2N)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.linear(dt, self.dt_proj.weight).transpose(1, 2)  # bias goes in as delta_bias
        y = _scan.selective_scan(
            x,
            delta,
            -torch.exp(self.A_log),
            B.transpose(1, 2),
            C.transpose(1, 2),
            self.D,
            z=z,
            delta_bias=self.dt_proj.bias,
            delta_softplus=True,
        )
        return self.out_proj(y.transpose(1, 2))


@register("T", "SelfSSM")
class ResidualMamba(nn.Module):
    """T = SelfSSM: a residual Mamba block, ``x + mixer(norm(x))`` (mamba-ssm's Block layout).

    Parameters
    ----------
    dim : int
        Width d.
    d_state : int
        State size N (16).
    mamba_expand : float
        Mamba's expand (2). Prefixed so that a settings dict shared with CrossSSM (expand 1) cannot
        change it silently.
    mamba_d_conv : int
        Mamba's conv kernel (4).
    mamba_dt_rank : int or "auto"
        Mamba's dt_rank ("auto" = ceil(d/16)); prefixed because SelfSSM's dt_rank defaults to 4.
    """

    def __init__(
        self,
        dim: int,
        *,
        d_state: int = 16,
        mamba_expand: float = 2,
        mamba_d_conv: int = 4,
        mamba_dt_rank: int | str = "auto",
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mixer = Mamba(dim, d_state=d_state, d_conv=mamba_d_conv, expand=mamba_expand, dt_rank=mamba_dt_rank)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, m, d) -> (batch, m, d)."""
        return x + self.mixer(self.norm(x))
