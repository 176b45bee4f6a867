"""A fused selective scan for one CPU thread: the recurrence and its hand-derived backward as numba kernels.

:func:`~avnas_nni.ops.scan.selective_scan_torch` runs the recurrence as ~7 small torch ops per time step and
autograd adds ~15 more per step backward; on the embedded data's shapes each op touches a (batch, dim, N) slice of
about a megabyte, so a scan is bound by op dispatch and memory traffic, not arithmetic. Here ``exp(delta*A)`` is one
vectorised product and exp (numpy's SIMD exp) per ~1 MB chunk of batch rows, kept for the backward, and the rest
runs per (batch, channel) in compiled loops whose (L, N) working set stays in L1:

forward::

    h_t = dA_t * h_{t-1} + (delta_t * u_t) * B_t,      y_t = sum_n h_t * C_t

backward, with g_t = dLoss/dh_t (a reverse recurrence), then independent across t::

    g_t      = g_{t+1} * dA_{t+1} + gy_t * C_t
    x_t      = g_t * dA_t * h_{t-1}
    gdelta_t = sum_n x_t * A + u_t * sum_n g_t * B_t,    gu_t = delta_t * sum_n g_t * B_t
    gA       = sum_{b,t} x_t * delta_t,   gB_t = sum_d g_t * delta_t * u_t,   gC_t = sum_d gy_t * h_t

The kernels are serial: :func:`~avnas_nni.ops.scan.selective_scan` uses them on CPU when torch runs one intra-op
thread (the thread policy's choice for small work, :mod:`avnas_nni.threads`); with more threads torch's own scan
parallelises. ``delta_bias``, softplus, ``D`` and ``z`` stay torch ops around the kernel (autograd differentiates
them). The backward is first-order only (``once_differentiable``); the torch scan stays the double-differentiable
one. Forward + backward on one thread, L 25, N 16, ``python -m benchmarks.scan_speed --threads 1``
(``benchmarks/results/issue14_speed/``): batch 192 × dim 96 (the supernet's M cells) 18.5 ms vs the torch scan's
41.8 ms; batch 32 × dim 1536 (the paper's d_inner) 46.5 vs 150.3 ms.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np
import torch
from torch.autograd.function import once_differentiable

__all__ = ["fused_recurrence", "fused_scan_available"]

logger = logging.getLogger(__name__)

# numba's fast-math flags that allow vectorising the sums over the state (reassociation) and fused
# multiply-adds; not nnan/ninf, so NaN and inf propagate as in the torch scan.
_FASTMATH = {"reassoc", "contract", "arcp", "nsz"}
# exp(delta*A) is made per chunk of batch rows of about this many elements (4 bytes each: ~1 MB, cache-sized)
_CHUNK_ELEMENTS = 2**18


@functools.cache
def _kernels() -> tuple[Any, Any] | None:
    """The compiled (forward, backward) kernels, or None when numba does not import (then the torch scan runs)."""
    try:
        import numba
    except ImportError as exc:  # numba comes with the package's dependencies; a broken install must not break it
        logger.debug("numba is unavailable (%s): the fused CPU scan is off", exc)
        return None
    njit = numba.njit(cache=True, fastmath=_FASTMATH, boundscheck=False, nogil=True)

    @njit
    def forward(u, delta, dA, Bt, Ct, y):  # pragma: no cover - compiled
        batch, dim, length = u.shape
        d_state = Bt.shape[2]
        h = np.empty(d_state, dtype=u.dtype)
        for b in range(batch):
            for d in range(dim):
                for n in range(d_state):
                    h[n] = 0
                for t in range(length):
                    du = delta[b, d, t] * u[b, d, t]
                    acc = du * 0
                    for n in range(d_state):
                        state = dA[b, d, t, n] * h[n] + du * Bt[b, t, n]
                        h[n] = state
                        acc += state * Ct[b, t, n]
                    y[b, d, t] = acc

    @njit
    def backward(u, delta, A, dA, Bt, Ct, gy, gu, gdelta, gA, gB, gC):  # pragma: no cover - compiled
        batch, dim, length = u.shape
        d_state = Bt.shape[2]
        hs = np.empty((length + 1, d_state), dtype=u.dtype)  # h_{t-1} at row t
        g = np.empty((length, d_state), dtype=u.dtype)
        for b in range(batch):
            for d in range(dim):
                for n in range(d_state):
                    hs[0, n] = 0
                for t in range(length):
                    du = delta[b, d, t] * u[b, d, t]
                    for n in range(d_state):
                        hs[t + 1, n] = dA[b, d, t, n] * hs[t, n] + du * Bt[b, t, n]
                last = length - 1
                for n in range(d_state):
                    g[last, n] = gy[b, d, last] * Ct[b, last, n]
                for t in range(length - 2, -1, -1):
                    gyt = gy[b, d, t]
                    for n in range(d_state):
                        g[t, n] = g[t + 1, n] * dA[b, d, t + 1, n] + gyt * Ct[b, t, n]
                for t in range(length):  # no dependence across t left: the loops over n vectorise
                    dt, ut, gyt = delta[b, d, t], u[b, d, t], gy[b, d, t]
                    dtu = dt * ut
                    through_decay = dt * 0
                    through_input = dt * 0
                    for n in range(d_state):
                        gn = g[t, n]
                        x = gn * dA[b, d, t, n] * hs[t, n]
                        through_decay += x * A[d, n]
                        gA[d, n] += x * dt
                        through_input += gn * Bt[b, t, n]
                        gB[b, t, n] += gn * dtu
                        gC[b, t, n] += gyt * hs[t + 1, n]
                    gdelta[b, d, t] = through_decay + through_input * ut
                    gu[b, d, t] = through_input * dt

    return forward, backward


def fused_scan_available() -> bool:
    """Whether the numba kernels can be used in this process (numba imports)."""
    return _kernels() is not None


def _numpy(tensor: torch.Tensor):
    return tensor.detach().numpy()


def _row_chunks(u: torch.Tensor, d_state: int) -> list[slice]:
    """Batch rows in chunks whose ``exp(delta*A)`` block, (rows, dim, L, N), is about a megabyte."""
    step = max(1, _CHUNK_ELEMENTS // (u.shape[1] * u.shape[2] * d_state))
    return [slice(start, start + step) for start in range(0, u.shape[0], step)]


class _FusedScan(torch.autograd.Function):
    """y = scan(u, delta, A, B, C) for (batch, dim, L) u and delta, (dim, N) A, (batch, N, L) B and C.

    ``exp(delta*A)`` is made per chunk of batch rows of about a megabyte, and the chunks are kept for the backward:
    one (batch, dim, L, N) block is tens of megabytes at the supernet's shapes, and allocating and faulting it in
    at once cost more than the exponentials (forward at batch 192 × dim 96: 35 ms whole, 9 ms chunked); making
    the chunks again in the backward cost more than keeping them (forward + backward 27 vs 19 ms).
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C):
        forward_kernel, _ = _kernels()
        Bt, Ct = B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous()  # (batch, L, N)
        y = torch.empty_like(u)
        u_, delta_, Bt_, Ct_, y_ = (_numpy(x) for x in (u, delta, Bt, Ct, y))
        decays = []
        for rows in _row_chunks(u, A.shape[1]):
            dA = delta[rows].unsqueeze(-1) * A[:, None, :]
            np.exp(_numpy(dA), out=_numpy(dA))
            forward_kernel(u_[rows], delta_[rows], _numpy(dA), Bt_[rows], Ct_[rows], y_[rows])
            decays.append(dA)
        ctx.save_for_backward(u, delta, A, Bt, Ct)
        ctx.decays = decays
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, gy):
        _, backward_kernel = _kernels()
        u, delta, A, Bt, Ct = ctx.saved_tensors
        gu, gdelta = torch.empty_like(u), torch.empty_like(u)
        gA, gB, gC = torch.zeros_like(A), torch.zeros_like(Bt), torch.zeros_like(Ct)
        u_, delta_, A_, Bt_, Ct_, gy_, gu_, gdelta_, gA_, gB_, gC_ = (
            _numpy(x) for x in (u, delta, A, Bt, Ct, gy.contiguous(), gu, gdelta, gA, gB, gC))
        for rows, dA in zip(_row_chunks(u, A.shape[1]), ctx.decays, strict=True):
            backward_kernel(u_[rows], delta_[rows], A_, _numpy(dA), Bt_[rows], Ct_[rows], gy_[rows], gu_[rows],
                            gdelta_[rows], gA_, gB_[rows], gC_[rows])
        return gu, gdelta, gA, gB.transpose(1, 2), gC.transpose(1, 2)


def fused_recurrence(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                     C: torch.Tensor) -> torch.Tensor:
    """y of the recurrence through the kernels (differentiable once): (batch, dim, L) u and delta (bias and
    softplus already applied), (dim, N) A, (batch, N, L) B and C, all CPU tensors of one float dtype.

    :func:`~avnas_nni.ops.scan.selective_scan_fused` wraps it with the scan's arguments (D, z, delta_bias,
    softplus, dtypes) and checks the shapes; needs :func:`fused_scan_available`.
    """
    return _FusedScan.apply(u.contiguous(), delta.contiguous(), A.contiguous(), B, C)
