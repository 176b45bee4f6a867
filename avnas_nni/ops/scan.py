"""The selective scan (S6) used by every state-space operator of the package.

One entry point, :func:`selective_scan`, with mamba-ssm's ``selective_scan_fn`` signature and layout.
On a CUDA tensor, and when mamba-ssm and its compiled extension import, it calls mamba-ssm's fused
kernel; on CPU with one torch thread, the fused numba kernels of :mod:`.scan_cpu`; everywhere else (and
while tracing for export) :func:`selective_scan_torch`, this module's own pure-PyTorch scan.
mamba-ssm is optional: nothing here needs it.

The recurrence, per batch element b, channel d and state n::

    dA_t  = exp(delta_t * A)            (discretised state matrix, zero-order hold)
    dBu_t = delta_t * B_t * u_t         (discretised input, Euler)
    h_t   = dA_t * h_{t-1} + dBu_t,     h_{-1} = 0
    y_t   = sum_n h_t * C_t  (+ D * u_t) (* silu(z_t))
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import torch
import torch.nn.functional as F

from ._numba import serial_cpu
from .scan_cpu import fused_recurrence, fused_scan_available

__all__ = [
    "cuda_scan_available", "selective_scan", "selective_scan_fused", "selective_scan_ref", "selective_scan_torch",
]

logger = logging.getLogger(__name__)

# dtypes mamba-ssm's kernel accepts for u, delta, B, C, z; anything else (float64) uses the own scan.
_CUDA_SCAN_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@functools.cache
def _mamba_scan_fn() -> Any | None:
    """mamba-ssm's ``selective_scan_fn`` when mamba-ssm and its CUDA extension import, else None.

    Evaluated once, lazily: importing mamba-ssm pulls in triton and the compiled extension, which a
    CPU run never needs.
    """
    try:
        from mamba_ssm.ops import selective_scan_interface
    except ImportError as exc:
        if (exc.name or "").split(".")[0] == "mamba_ssm":
            logger.debug("mamba_ssm is not installed: using the own PyTorch selective scan")
        else:  # mamba_ssm is there but a dependency (selective_scan_cuda, einops, triton) is not
            logger.warning("mamba_ssm failed to import (%s): using the own PyTorch selective scan", exc)
        return None
    except Exception as exc:  # a broken install (ABI mismatch, missing libcudart) must not break the package
        logger.warning("mamba_ssm is installed but failed to import (%s): using the own PyTorch scan", exc)
        return None
    extension = getattr(selective_scan_interface, "selective_scan_cuda", None)
    if not hasattr(extension, "fwd"):
        logger.warning("mamba_ssm imported without its CUDA extension selective_scan_cuda: using the own scan")
        return None
    return selective_scan_interface.selective_scan_fn


def cuda_scan_available() -> bool:
    """Whether :func:`selective_scan` can use mamba-ssm's CUDA kernel on this machine.

    Returns
    -------
    bool
        True when mamba-ssm imports with its compiled extension and a CUDA device is visible.
    """
    return torch.cuda.is_available() and _mamba_scan_fn() is not None


def _check_shapes(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
) -> None:
    """Raise ValueError, one line naming the argument, when the layout is not mamba-ssm's."""
    if u.dim() != 3:
        raise ValueError(f"selective_scan: u must be (batch, dim, L), got shape {tuple(u.shape)}")
    batch, dim, length = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"selective_scan: delta must have u's shape {tuple(u.shape)}, got {tuple(delta.shape)}")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"selective_scan: A must be (dim={dim}, N), got shape {tuple(A.shape)}")
    d_state = A.shape[1]
    for label, mat in (("B", B), ("C", C)):
        if mat.dim() == 3:
            ok = mat.shape == (batch, d_state, length)
        elif mat.dim() == 4:
            ok = mat.shape[0] == batch and mat.shape[2:] == (d_state, length) and dim % mat.shape[1] == 0
        else:
            ok = False
        if not ok:
            raise ValueError(
                f"selective_scan: {label} must be (batch={batch}, N={d_state}, L={length}) or "
                f"(batch, groups dividing dim={dim}, N, L), got shape {tuple(mat.shape)}"
            )
    if D is not None and D.shape != (dim,):
        raise ValueError(f"selective_scan: D must be (dim={dim},), got shape {tuple(D.shape)}")
    if delta_bias is not None and delta_bias.shape != (dim,):
        raise ValueError(f"selective_scan: delta_bias must be (dim={dim},), got shape {tuple(delta_bias.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"selective_scan: z must have u's shape {tuple(u.shape)}, got {tuple(z.shape)}")


def _time_major(mat: torch.Tensor, dim: int) -> torch.Tensor:
    """(batch, N, L) or (batch, G, N, L) -> contiguous (batch, L, 1 or dim, N), broadcastable to (b, L, d, N)."""
    if mat.dim() == 3:
        return mat.transpose(1, 2).contiguous().unsqueeze(2)
    groups = mat.shape[1]
    per_time = mat.permute(0, 3, 1, 2).contiguous()  # (batch, L, G, N)
    return per_time if groups == 1 else per_time.repeat_interleave(dim // groups, dim=2)


def selective_scan_torch(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """The selective scan in plain PyTorch (any device, differentiable, double-differentiable).

    Same arguments and result as :func:`selective_scan`. Computes in float32, or float64 when u is
    float64, and returns u's dtype.

    Notes
    -----
    Speed on CPU comes from the shape of the autograd graph: the recurrence runs over ``unbind``-ed time
    slices with one fresh (batch, dim, N) state per step (no in-place writes into a preallocated buffer,
    which make autograd copy the full buffer per step), and every (batch, dim, N) term is made *inside*
    the step (``exp(delta_t*A)``, ``delta_t*u_t*B_t``) and reduced against ``C_t`` at once. Nothing of
    size (batch, L, dim, N) exists, forward or backward: the work is bandwidth-bound, and slices stay in
    cache where full-length products went to memory. Forward + backward, 1 thread, L 25, N 16:
    batch 32 × dim 1536: 0.15–0.20 s vs 0.64–0.73 s when ``exp(delta*A)`` and ``delta*B*u`` were
    computed for all steps at once (this function until issue 14); the supernet's batch 192 × dim 96:
    59 ms vs 135–179 ms; stacking the states then one matmul with C, a hand-written autograd.Function
    of torch ops and a ``selective_scan_ref``-style loop were all slower (``python -m benchmarks.scan_speed``).
    The compiled kernels of :mod:`.scan_cpu` are faster still on one thread; this function stays the
    portable, multi-threaded and double-differentiable scan.
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    return _scan_with(_torch_recurrence, u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def selective_scan_fused(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """The selective scan through the fused CPU kernels of :mod:`.scan_cpu` (first-order gradients).

    Same arguments and result as :func:`selective_scan`, with B and C as (batch, N, L) (no channel groups) and
    CPU tensors; needs :func:`~avnas_nni.ops.scan_cpu.fused_scan_available`. Computes in float32, or float64 when
    u is float64, and returns u's dtype.
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    if B.dim() != 3 or C.dim() != 3:
        raise ValueError("selective_scan_fused: B and C must be (batch, N, L); channel groups need "
                         "selective_scan_torch")
    return _scan_with(fused_recurrence, u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def _scan_with(recurrence, u, delta, A, B, C, D, z, delta_bias, delta_softplus) -> torch.Tensor:
    """What the torch and fused scans share around their recurrence: Δ's bias and softplus before, the D skip
    and the silu(z) gate after, all in float32 (float64 for float64 u), the result in u's dtype."""
    dtype_in = u.dtype
    compute = torch.promote_types(dtype_in, torch.float32)
    delta = delta.to(compute)
    if delta_bias is not None:
        delta = delta + delta_bias.to(compute)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    u_c = u.to(compute)
    y = recurrence(u_c, delta, A.to(compute), B.to(compute), C.to(compute))
    if D is not None:
        y = y + u_c * D.to(compute)[:, None]
    if z is not None:
        y = y * F.silu(z.to(compute))
    return y.to(dtype_in)


def _torch_recurrence(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                      C: torch.Tensor) -> torch.Tensor:
    """y of the recurrence in torch ops (see :func:`selective_scan_torch`'s notes); inputs in the compute dtype."""
    dim = u.shape[1]
    # time-major and contiguous copies of the small (batch, dim, L) and (batch, N, L) tensors only, so that
    # each step's slices are dense
    delta_t = delta.transpose(1, 2).contiguous().unsqueeze(-1)  # (batch, L, dim, 1)
    delta_u = delta_t * u.transpose(1, 2).contiguous().unsqueeze(-1)  # (batch, L, dim, 1)
    inputs = _time_major(B, dim)  # (batch, L, 1 or dim, N)
    readout = _time_major(C, dim)

    ys = []
    state: torch.Tensor | None = None
    for delta_s, delta_u_s, input_s, readout_s in zip(delta_t.unbind(1), delta_u.unbind(1), inputs.unbind(1),
                                                      readout.unbind(1), strict=True):
        drive = delta_u_s * input_s  # (batch, dim, N)
        state = drive if state is None else torch.exp(delta_s * A) * state + drive
        ys.append((state * readout_s).sum(-1))
    return torch.stack(ys, dim=-1)  # (batch, dim, L)


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """Selective scan with mamba-ssm's ``selective_scan_fn`` signature and layout.

    Parameters
    ----------
    u : torch.Tensor
        Input, (batch, dim, L).
    delta : torch.Tensor
        Step sizes before ``delta_bias``/softplus, (batch, dim, L).
    A : torch.Tensor
        State matrix (diagonal per channel), (dim, N); negative for a stable scan.
    B, C : torch.Tensor
        Input and output matrices, (batch, N, L), or (batch, G, N, L) with G groups of channels.
    D : torch.Tensor, optional
        Skip term, (dim,): adds ``D * u``.
    z : torch.Tensor, optional
        Gate, (batch, dim, L): the output is multiplied by ``silu(z)``.
    delta_bias : torch.Tensor, optional
        (dim,), added to delta before the softplus.
    delta_softplus : bool
        Pass delta (+ bias) through softplus.

    Returns
    -------
    torch.Tensor
        (batch, dim, L), u's dtype.

    Notes
    -----
    mamba-ssm's CUDA kernel is used when :func:`cuda_scan_available`, u is on a CUDA device and u is
    float32/float16/bfloat16 (the kernel has no float64); A, D and delta_bias are then passed in
    float32, as the kernel requires. On CPU, with one torch intra-op thread and B, C without channel
    groups, :func:`selective_scan_fused` runs (serial compiled kernels, first-order
    gradients). Otherwise, and while ``torch.jit`` traces or ``torch.compile`` compiles,
    :func:`selective_scan_torch` runs.
    """
    if u.is_cuda and u.dtype in _CUDA_SCAN_DTYPES and cuda_scan_available():
        _check_shapes(u, delta, A, B, C, D, z, delta_bias)
        scan_fn = _mamba_scan_fn()
        return scan_fn(
            u,
            delta,
            A.float(),
            B,
            C,
            D=None if D is None else D.float(),
            z=z,
            delta_bias=None if delta_bias is None else delta_bias.float(),
            delta_softplus=delta_softplus,
        )
    if B.dim() == 3 and C.dim() == 3 and serial_cpu(u) and fused_scan_available():
        return selective_scan_fused(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def selective_scan_ref(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """The selective scan written the plain way, as mamba-ssm's ``selective_scan_ref``: the reference the fast
    scans are checked and timed against (``tests/test_scan.py``, ``benchmarks/scan_speed.py``).

    Same arguments and result as :func:`selective_scan` (B and C as (batch, N, L) or (batch, G, N, L)).
    (batch, dim, L, N) tensors for ``exp(ΔA)`` and ``ΔBu``, a state updated one time step at a time in a
    Python loop, one einsum per step with ``C``, the outputs stacked at the end. Computes in float32, or
    float64 when u is float64 (a precise oracle), and returns u's dtype. Slow: for checks, not for training.
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    dtype_in = u.dtype
    compute = torch.promote_types(dtype_in, torch.float32)
    u, delta, A = u.to(compute), delta.to(compute), A.to(compute)
    if delta_bias is not None:
        delta = delta + delta_bias.to(compute)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, d_state = u.shape[0], A.shape[0], A.shape[1]
    # (batch, G, N, L) groups: each group's B and C serve dim // G consecutive channels
    B = B.to(compute) if B.dim() == 3 else B.to(compute).repeat_interleave(dim // B.shape[1], dim=1)
    C = C.to(compute) if C.dim() == 3 else C.to(compute).repeat_interleave(dim // C.shape[1], dim=1)
    delta_a = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    delta_b_u = torch.einsum("bdl,bnl,bdl->bdln" if B.dim() == 3 else "bdl,bdnl,bdl->bdln", delta, B, u)
    state = u.new_zeros((batch, dim, d_state))
    ys = []
    for i in range(u.shape[2]):
        state = delta_a[:, :, i] * state + delta_b_u[:, :, i]
        ys.append(torch.einsum("bdn,bn->bd" if C.dim() == 3 else "bdn,bdn->bd", state, C[..., i]))
    y = torch.stack(ys, dim=2)
    out = y if D is None else y + u * D.to(compute)[:, None]
    if z is not None:
        out = out * F.silu(z.to(compute))
    return out.to(dtype_in)
