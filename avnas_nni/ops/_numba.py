"""What the numba CPU kernels (:mod:`.scan_cpu`, :mod:`.conv_cpu`) share: the lazy numba import, the rule for when
they run instead of torch's ops, and an exp that vectorises inside their loops."""

from __future__ import annotations

import functools
import logging
import math
from types import ModuleType

import numpy as np
import torch

__all__ = ["FASTMATH", "exp_into", "kernel_jit", "numba_or_none", "serial_cpu", "vector_exp"]

logger = logging.getLogger(__name__)

# numba's fast-math flags that allow vectorising sums (reassociation) and fused multiply-adds; not nnan/ninf, so
# NaN and inf propagate as in torch's ops.
FASTMATH = {"reassoc", "contract", "arcp", "nsz"}

# exp(x) = 2^k * exp(r), k = round(x / ln 2), r = x - k ln 2 in [-ln2/2, ln2/2] (ln 2 split in two for an exact
# k ln 2); exp(r) by the degree-7 minimax polynomial of Cephes' expf; 2^k written into the exponent bits. x is
# clamped to [_EXP_MIN, _EXP_MAX], branch-free (a select per element halved the kernels' speed): at the bottom
# k = -127, whose exponent bits make 2^k = 0, so exp(x) = 0 for x < ~-87.7 (exp is subnormal there, < 1.2e-38: a
# state decay of nothing either way); at the top exp(88.37) = 2.4e38 stands for anything larger (the scan's
# decays are exp of non-positive numbers).
_LOG2E, _LN2_HI, _LN2_LO = 1.4426950408889634, 0.693359375, -2.12194440e-4
_EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)
_EXP_MIN, _EXP_MAX = -88.0296, 88.37


@functools.cache
def numba_or_none() -> ModuleType | None:
    """numba, imported on first use, or None when it does not import (then torch's ops run)."""
    try:
        import numba
    except ImportError as exc:  # numba comes with the package's dependencies; a broken install must not break it
        logger.debug("numba is unavailable (%s): the CPU kernels are off", exc)
        return None
    return numba


def kernel_jit():
    """numba's ``njit`` as every kernel of the package compiles with it (cached on disk, :data:`FASTMATH`, no
    bounds checks, GIL released), or None when numba does not import."""
    numba = numba_or_none()
    return None if numba is None else numba.njit(cache=True, fastmath=FASTMATH, boundscheck=False, nogil=True)


def serial_cpu(tensor: torch.Tensor) -> bool:
    """Whether a kernel may replace torch's op on ``tensor``: a CPU tensor, torch on one intra-op thread (the
    thread policy's choice for small work, :mod:`avnas_nni.threads`; the kernels are serial, torch's ops
    parallelise), and neither ``torch.jit`` tracing (ONNX export) nor ``torch.compile`` compiling."""
    return (tensor.device.type == "cpu" and torch.get_num_threads() == 1 and not torch.jit.is_tracing()
            and not torch.compiler.is_compiling())


@functools.cache
def vector_exp():
    """``fast_exp(x)`` for numba kernels: for float32 a polynomial exp that vectorises inside their loops (numba's
    ``math.exp`` is a scalar libm call and this llvmlite has no SVML), within 1.02 ulp where exp is a normal float;
    for float64 libm's exp. None when numba does not import."""
    numba = numba_or_none()
    if numba is None:
        return None
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic, overload

    f32 = np.float32
    log2e, ln2_hi, ln2_lo = f32(_LOG2E), f32(_LN2_HI), f32(_LN2_LO)
    p0, p1, p2, p3, p4, p5 = (f32(c) for c in _EXP_POLY)
    exp_min, exp_max, one, half = f32(_EXP_MIN), f32(_EXP_MAX), f32(1), f32(0.5)

    @intrinsic
    def pow2(typingctx, k):  # 2^k for a whole float32 k in [-126, 127] by writing the exponent bits; 0 for -127
        if k != types.float32:
            return None

        def codegen(context, builder, signature, args):
            i32 = ir.IntType(32)
            bits = builder.shl(builder.add(builder.fptosi(args[0], i32), ir.Constant(i32, 127)), ir.Constant(i32, 23))
            return builder.bitcast(bits, ir.FloatType())

        return types.float32(k), codegen

    @numba.njit(cache=True, fastmath={"contract", "nsz"}, nogil=True)  # no reassociation: Cody-Waite needs its order
    def exp32(x):  # pragma: no cover - compiled; branch-free so that loops calling it vectorise
        xc = min(max(x, exp_min), exp_max)  # NaN stays NaN
        k = np.floor(xc * log2e + half)
        r = xc - k * ln2_hi - k * ln2_lo
        p = ((((p0 * r + p1) * r + p2) * r + p3) * r + p4) * r + p5
        return (p * r * r + r + one) * pow2(k)

    def fast_exp(x):  # plain Python meaning; compiled code takes the overload below
        return math.exp(x)

    @overload(fast_exp, inline="always")
    def _fast_exp(x):
        if x == types.float32:
            return lambda x: exp32(x)
        return lambda x: math.exp(x)

    return fast_exp


def exp_into(x: np.ndarray, out: np.ndarray) -> None:
    """``out[:] = fast_exp(x)`` for 1-d float arrays (what the tests check the polynomial with); needs numba."""
    _exp_array()(x, out)


@functools.cache
def _exp_array():
    fast_exp = vector_exp()

    @kernel_jit()
    def exp_array(x, out):  # pragma: no cover - compiled
        for i in range(x.size):
            out[i] = fast_exp(x[i])

    return exp_array
