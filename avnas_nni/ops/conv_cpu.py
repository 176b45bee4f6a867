"""A causal depthwise Conv1d for one CPU thread: forward and backward as numba kernels over channels last.

Mamba's short conv and the Conv_k candidate convolve (batch, channels, L) views of (batch, L, channels) data
with k ≈ 4 taps per channel: a few multiply-adds per element, for which torch's CPU path (oneDNN forward,
a generic grouped-conv backward) spends its time on layout and per-group work. Here every loop runs along the
contiguous channel axis of the (batch, L, channels) data and vectorises::

    y[b, t]   = bias + sum_j w[j] * x[b, t - (k-1) + j]                     (x is 0 before t = 0)
    gx[b, s]  = sum_j w[j] * gy[b, s + (k-1) - j],   gw[j] = sum_{b,t} gy[b, t] * x[b, t - (k-1) + j],
    gbias     = sum_{b,t} gy[b, t]

:class:`~avnas_nni.ops.mamba.CausalDepthwiseConv1d` uses it under the same rule as the fused scan
(:func:`~avnas_nni.ops._numba.serial_cpu`); the backward is first-order only (``once_differentiable``), the
torch conv stays the double-differentiable one. Forward + backward at the supernet's shapes: see
``benchmarks/results/issue14.md``.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from ._numba import kernel_jit

__all__ = ["causal_conv_fused", "fused_conv_available"]

logger = logging.getLogger(__name__)


@functools.cache
def _kernels() -> tuple[Any, Any] | None:
    """The compiled (forward, backward) kernels, or None when numba does not import."""
    njit = kernel_jit()
    if njit is None:
        return None

    @njit
    def forward(x, w, bias, y):  # pragma: no cover - compiled
        batch, length, channels = x.shape
        taps = w.shape[0]
        for b in range(batch):
            for t in range(length):
                y_t = y[b, t]
                for c in range(channels):
                    y_t[c] = bias[c]
                for j in range(max(0, taps - 1 - t), taps):
                    x_s, w_j = x[b, t - (taps - 1) + j], w[j]
                    for c in range(channels):
                        y_t[c] += w_j[c] * x_s[c]

    @njit
    def backward(x, w, gy, gx, gw, gbias):  # pragma: no cover - compiled
        batch, length, channels = x.shape
        taps = w.shape[0]
        for b in range(batch):
            for t in range(length):
                gy_t = gy[b, t]
                for c in range(channels):
                    gbias[c] += gy_t[c]
                for j in range(max(0, taps - 1 - t), taps):
                    s = t - (taps - 1) + j
                    x_s, gx_s, w_j, gw_j = x[b, s], gx[b, s], w[j], gw[j]
                    for c in range(channels):
                        gx_s[c] += w_j[c] * gy_t[c]
                        gw_j[c] += gy_t[c] * x_s[c]

    return forward, backward


def fused_conv_available() -> bool:
    """Whether the numba kernels can be used in this process (numba imports)."""
    return _kernels() is not None


class _CausalConv(torch.autograd.Function):
    """(batch, channels, L) x, (channels, 1, k) weight, (channels,) bias -> (batch, channels, L)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        forward_kernel, _ = _kernels()
        x_l = x.transpose(1, 2).contiguous()  # (batch, L, channels); a no-op for the operators' transposed views
        w = weight[:, 0, :].t().contiguous()  # (k, channels)
        y = torch.empty_like(x_l)
        forward_kernel(x_l.detach().numpy(), w.detach().numpy(), bias.detach().numpy(), y.numpy())
        ctx.save_for_backward(x_l, w)
        return y.transpose(1, 2)

    @staticmethod
    @once_differentiable
    def backward(ctx, gy):
        _, backward_kernel = _kernels()
        x_l, w = ctx.saved_tensors
        gy_l = gy.transpose(1, 2).contiguous()
        gx, gw, gbias = torch.zeros_like(x_l), torch.zeros_like(w), torch.zeros(w.shape[1], dtype=w.dtype)
        backward_kernel(x_l.numpy(), w.numpy(), gy_l.numpy(), gx.numpy(), gw.numpy(), gbias.numpy())
        return gx.transpose(1, 2), gw.t().unsqueeze(1), gbias


def causal_conv_fused(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Causal depthwise conv through the kernels (differentiable once).

    Parameters
    ----------
    x : torch.Tensor
        (batch, channels, L), CPU, float32 or float64.
    weight : torch.Tensor
        (channels, 1, k), ``nn.Conv1d``'s depthwise layout, x's dtype.
    bias : torch.Tensor or None
        (channels,).

    Returns
    -------
    torch.Tensor
        (batch, channels, L): output t sees inputs t-k+1..t. Needs :func:`fused_conv_available`.
    """
    if x.dim() != 3 or weight.dim() != 3 or weight.shape[:2] != (x.shape[1], 1):
        raise ValueError(f"causal_conv_fused: expected x (batch, channels, L) and weight (channels, 1, k), got "
                         f"{tuple(x.shape)} and {tuple(weight.shape)}")
    if bias is None:
        bias = x.new_zeros(x.shape[1])
    return _CausalConv.apply(x, weight, bias)
