"""Dropout for the FFN and MLP candidates: torch's module, with its CPU masks made inside a numba kernel.

torch draws a CPU dropout mask with ``bernoulli_`` on a Mersenne twister, stores it, and multiplies by it forward
and backward: several passes over the activations (an FFN's are (192, 25, 384) at the supernet's shapes, 7 MB,
which do not stay in cache). Here the keep decision of element i is a 32-bit integer hash of (seed, i) compared
with p · 2³², made in the same vectorised loop that scales the element (one pass forward, one backward, no mask
stored: the backward makes the same decisions again from the seed). The FFN's ReLU goes in the same pass
(:meth:`Dropout.after_relu`), whose backward needs only the output that the next linear layer keeps anyway.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from ._numba import kernel_jit

__all__ = ["Dropout"]

logger = logging.getLogger(__name__)


@functools.cache
def _kernels() -> tuple[Any, Any, Any] | None:
    """The compiled (forward, backward, backward after a ReLU) kernels, or None when numba does not import."""
    njit = kernel_jit()
    if njit is None:
        return None
    low32, golden, mul1, mul2 = np.uint64(0xFFFFFFFF), np.uint64(0x9E3779B9), np.uint64(0x7FEB352D), \
        np.uint64(0x846CA68B)
    s15, s16 = np.uint64(15), np.uint64(16)

    @njit
    def mix(h):  # pragma: no cover - compiled; Wellons' lowbias32 integer hash, in 64-bit words masked to 32 bits
        h ^= h >> s16
        h = (h * mul1) & low32
        h ^= h >> s15
        h = (h * mul2) & low32
        return h ^ (h >> s16)

    @njit
    def forward(x, seed_lo, seed_hi, threshold, scale, relu, out):  # pragma: no cover - compiled
        salt = mix(np.uint64(seed_hi))
        zero = x[0] * 0
        for i in range(x.size):
            keep = scale if mix(((np.uint64(i) * golden + np.uint64(seed_lo)) & low32) ^ salt) >= threshold else zero
            value = max(x[i], zero) if relu else x[i]
            out[i] = value * keep

    @njit
    def backward(grad, seed_lo, seed_hi, threshold, scale, out):  # pragma: no cover - compiled
        salt = mix(np.uint64(seed_hi))
        zero = grad[0] * 0
        for i in range(grad.size):
            keep = scale if mix(((np.uint64(i) * golden + np.uint64(seed_lo)) & low32) ^ salt) >= threshold else zero
            out[i] = grad[i] * keep

    @njit
    def backward_after_relu(grad, out, scale, result):  # pragma: no cover - compiled
        zero = grad[0] * 0
        for i in range(grad.size):
            result[i] = grad[i] * scale if out[i] > zero else zero

    return forward, backward, backward_after_relu


class _DropoutFn(torch.autograd.Function):
    """Dropout (after a ReLU when ``relu``) of a contiguous CPU tensor, its keep decisions hashed from ``seed``."""

    @staticmethod
    def forward(ctx, x, seed, p, relu):
        forward_kernel = _kernels()[0]
        out = torch.empty_like(x)
        scale, threshold = 1 / (1 - p), np.uint64(min(int(p * 2**32), 2**32 - 1))
        seed_lo, seed_hi = seed & 0xFFFFFFFF, seed >> 32
        forward_kernel(x.detach().reshape(-1).numpy(), seed_lo, seed_hi, threshold, scale, relu,
                       out.view(-1).numpy())
        ctx.args = seed_lo, seed_hi, threshold, scale
        ctx.relu = relu
        if relu:  # out > 0 exactly where the element was kept and positive: the ReLU's and dropout's gradient mask
            ctx.save_for_backward(out)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        seed_lo, seed_hi, threshold, scale = ctx.args
        _, backward_kernel, backward_after_relu = _kernels()
        grad = grad.contiguous()
        result = torch.empty_like(grad)
        if ctx.relu:
            (out,) = ctx.saved_tensors
            backward_after_relu(grad.view(-1).numpy(), out.view(-1).numpy(), scale, result.view(-1).numpy())
        else:
            backward_kernel(grad.view(-1).numpy(), seed_lo, seed_hi, threshold, scale, result.view(-1).numpy())
        return result, None, None, None


class Dropout(nn.Dropout):
    """``torch.nn.Dropout`` whose CPU training pass runs in a numba kernel (same distribution, another stream).

    Each call takes one draw of torch's global generator as its seed, so masks follow ``torch.manual_seed``
    exactly as torch's own dropout does (a seeded run repeats; a resumed run reseeds per batch). Element i is kept
    when a 32-bit hash of (seed, i) is ≥ p · 2³² (probability 1 − p up to 2⁻³²) and scaled by 1 / (1 − p). In place,
    p = 0 or 1, evaluation, CUDA tensors, dtypes other than float32/float64, tensors of 2³² elements or more (the
    hash counts elements in 32 bits) and a missing numba: torch's forward.
    Gradients are first-order only on the kernel path.

    Parameters
    ----------
    p : float
        Probability of zeroing an element.
    """

    def _kernel_applies(self, x: torch.Tensor) -> bool:
        return (self.training and not self.inplace and x.device.type == "cpu" and 0 < self.p < 1
                and x.dtype in (torch.float32, torch.float64) and 0 < x.numel() < 2**32 and _kernels() is not None)

    def _apply_kernel(self, x: torch.Tensor, relu: bool) -> torch.Tensor:
        seed = int(torch.randint(0, 2**62, (1,)))
        return _DropoutFn.apply(x.contiguous(), seed, float(self.p), relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Drop elements of x while training; x unchanged otherwise."""
        return self._apply_kernel(x, False) if self._kernel_applies(x) else super().forward(x)

    def after_relu(self, x: torch.Tensor) -> torch.Tensor:
        """``self(relu(x))``, in one pass on the kernel path."""
        return self._apply_kernel(x, True) if self._kernel_applies(x) else self(F.relu(x))
