"""A fused selective scan for one CPU thread: the recurrence and its hand-derived backward as numba kernels.

:func:`~avnas_nni.ops.scan.selective_scan_torch` runs the recurrence as ~7 small torch ops per time step and
autograd adds ~15 more per step backward; on the embedded data's shapes each op touches a (batch, dim, N) slice of
about a megabyte, so a scan is bound by op dispatch and memory traffic, not arithmetic. Here it runs in compiled
loops over channels last, (batch, L, dim): every innermost loop runs along the contiguous channel axis, so it
vectorises whatever N is (loops over N = 16 did not: the compiler's vector loop wants more iterations), and
``exp(delta*A)`` is made inside the loops by a polynomial exp the compiler vectorises (numba's ``math.exp`` is a
scalar libm call, and this llvmlite has no SVML). Nothing of size (batch, dim, L, N) is stored: the backward
makes the decays and states again for one block of channels at a time:

forward::

    h_t = dA_t * h_{t-1} + (delta_t * u_t) * B_t,      y_t = sum_n h_t * C_t,      dA_t = exp(delta_t * A)

backward, with g_t = dLoss/dh_t (a reverse recurrence)::

    g_t      = g_{t+1} * dA_{t+1} + gy_t * C_t
    x_t      = g_t * dA_t * h_{t-1}
    gdelta_t = sum_n x_t * A + u_t * sum_n g_t * B_t,    gu_t = delta_t * sum_n g_t * B_t
    gA       = sum_{b,t} x_t * delta_t,   gB_t = sum_d g_t * delta_t * u_t,   gC_t = sum_d gy_t * h_t

The kernels are serial: :func:`~avnas_nni.ops.scan.selective_scan` uses them on CPU when torch runs one intra-op
thread (the thread policy's choice for small work, :mod:`avnas_nni.threads`); with more threads torch's own scan
parallelises. ``delta_bias``, softplus, ``D`` and ``z`` stay torch ops around the kernel (autograd differentiates
them). The backward is first-order only (``once_differentiable``); the torch scan stays the double-differentiable
one. float64 inputs take libm's exp (for the precise checks), float32 the polynomial (within 1.02 ulp of exp
where exp is a normal float, checked in the tests). Speeds: ``python -m benchmarks.scan_speed``
(``benchmarks/results/issue14_speed/``).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from ._numba import kernel_jit, vector_exp

__all__ = ["fused_recurrence", "fused_scan_available"]

logger = logging.getLogger(__name__)

# channels per block of the backward, whose (L + 1, N, block) decays and states then stay in L2
# (2 x 26 x 16 x 128 x 4 B = 426 KB); 64 and 256 were no faster at dim 96, 192 and 1536
_BLOCK = 128


@functools.cache
def _kernels() -> tuple[Any, Any] | None:
    """The compiled (forward, backward) kernels, or None when numba does not import (the torch scan runs)."""
    njit = kernel_jit()
    if njit is None:
        return None
    fast_exp = vector_exp()

    @njit
    def forward(u, delta, A, Bt, Ct, y):  # pragma: no cover - compiled
        batch, length, dim = u.shape
        d_state = Bt.shape[2]
        h = np.empty((d_state, dim), dtype=u.dtype)
        for b in range(batch):
            h[:] = 0
            for t in range(length):
                u_t, delta_t, y_t = u[b, t], delta[b, t], y[b, t]  # rows over channels: the loops vectorise
                y_t[:] = 0
                for n in range(d_state):
                    h_n, A_n, b_n, c_n = h[n], A[n], Bt[b, t, n], Ct[b, t, n]
                    for k in range(dim):
                        dt = delta_t[k]
                        state = fast_exp(dt * A_n[k]) * h_n[k] + dt * u_t[k] * b_n
                        h_n[k] = state
                        y_t[k] += state * c_n

    @njit
    def backward(u, delta, A, Bt, Ct, gy, gu, gdelta, gA, gB, gC):  # pragma: no cover - compiled
        batch, length, dim = u.shape
        d_state = Bt.shape[2]
        block = min(dim, _BLOCK)
        dA = np.zeros((length + 1, d_state, block), dtype=u.dtype)  # row L stays 0: no decay after the end
        hs = np.empty((length + 1, d_state, block), dtype=u.dtype)  # h_{t-1} at row t
        g = np.empty((d_state, block), dtype=u.dtype)  # g_t, overwritten going back in t
        through_decay = np.empty(block, dtype=u.dtype)
        through_input = np.empty(block, dtype=u.dtype)
        for b in range(batch):
            for d0 in range(0, dim, block):
                d1 = min(d0 + block, dim)
                width = d1 - d0
                hs[0, :, :width] = 0
                for t in range(length):
                    u_t, delta_t = u[b, t, d0:d1], delta[b, t, d0:d1]
                    for n in range(d_state):
                        A_n, dA_tn, h_prev, h_next, b_n = A[n, d0:d1], dA[t, n], hs[t, n], hs[t + 1, n], Bt[b, t, n]
                        for k in range(width):
                            decay = fast_exp(delta_t[k] * A_n[k])
                            dA_tn[k] = decay
                            h_next[k] = decay * h_prev[k] + delta_t[k] * u_t[k] * b_n
                g[:, :width] = 0
                for t in range(length - 1, -1, -1):
                    u_t, delta_t, gy_t = u[b, t, d0:d1], delta[b, t, d0:d1], gy[b, t, d0:d1]
                    through_decay[:width] = 0
                    through_input[:width] = 0
                    for n in range(d_state):
                        g_n, A_n, gA_n = g[n], A[n, d0:d1], gA[n, d0:d1]
                        dA_next, dA_t, h_prev, h_t = dA[t + 1, n], dA[t, n], hs[t, n], hs[t + 1, n]
                        b_n, c_n = Bt[b, t, n], Ct[b, t, n]
                        sum_b = b_n * 0
                        sum_c = b_n * 0
                        for k in range(width):
                            g_t = g_n[k] * dA_next[k] + gy_t[k] * c_n
                            g_n[k] = g_t
                            x = g_t * dA_t[k] * h_prev[k]
                            through_decay[k] += x * A_n[k]
                            gA_n[k] += x * delta_t[k]
                            through_input[k] += g_t * b_n
                            sum_b += g_t * delta_t[k] * u_t[k]
                            sum_c += gy_t[k] * h_t[k]
                        gB[b, t, n] += sum_b
                        gC[b, t, n] += sum_c
                    gdelta_t, gu_t = gdelta[b, t, d0:d1], gu[b, t, d0:d1]
                    for k in range(width):
                        gdelta_t[k] = through_decay[k] + through_input[k] * u_t[k]
                        gu_t[k] = through_input[k] * delta_t[k]

    return forward, backward


def fused_scan_available() -> bool:
    """Whether the numba kernels can be used in this process (numba imports)."""
    return _kernels() is not None


def _numpy(tensor: torch.Tensor):
    return tensor.detach().numpy()


class _FusedScan(torch.autograd.Function):
    """y = scan(u, delta, A, B, C) for (batch, dim, L) u and delta, (dim, N) A, (batch, N, L) B and C.

    The kernels take channels last, (batch, L, dim), the layout the operators make u and delta in (the scan's
    (batch, dim, L) arguments are usually transposed views of it, so the copies below are often no-ops). Only the
    inputs are kept for the backward, which makes ``exp(delta*A)`` and the states again per block of channels:
    cheaper than storing (batch, dim, L, N) tensors (tens of megabytes at the supernet's shapes) and reading them
    back from memory.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C):
        forward_kernel, _ = _kernels()
        u_l, delta_l = (x.transpose(1, 2).contiguous() for x in (u, delta))  # (batch, L, dim)
        A_t = A.t().contiguous()  # (N, dim)
        Bt, Ct = B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous()  # (batch, L, N)
        y = torch.empty_like(u_l)
        forward_kernel(*(_numpy(x) for x in (u_l, delta_l, A_t, Bt, Ct, y)))
        ctx.save_for_backward(u_l, delta_l, A_t, Bt, Ct)
        return y.transpose(1, 2)

    @staticmethod
    @once_differentiable
    def backward(ctx, gy):
        _, backward_kernel = _kernels()
        u_l, delta_l, A_t, Bt, Ct = ctx.saved_tensors
        gu, gdelta = torch.empty_like(u_l), torch.empty_like(u_l)
        gA, gB, gC = torch.zeros_like(A_t), torch.zeros_like(Bt), torch.zeros_like(Ct)
        gy_l = gy.transpose(1, 2).contiguous()
        backward_kernel(*(_numpy(x) for x in (u_l, delta_l, A_t, Bt, Ct, gy_l, gu, gdelta, gA, gB, gC)))
        return gu.transpose(1, 2), gdelta.transpose(1, 2), gA.t(), gB.transpose(1, 2), gC.transpose(1, 2)


def fused_recurrence(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                     C: torch.Tensor) -> torch.Tensor:
    """y of the recurrence through the kernels (differentiable once): (batch, dim, L) u and delta (bias and
    softplus already applied), (dim, N) A, (batch, N, L) B and C, all CPU tensors of one float dtype.

    :func:`~avnas_nni.ops.scan.selective_scan_fused` wraps it with the scan's arguments (D, z, delta_bias,
    softplus, dtypes) and checks the shapes; needs :func:`fused_scan_available`.
    """
    return _FusedScan.apply(u, delta, A, B, C)
