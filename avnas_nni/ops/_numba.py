"""What the numba CPU kernels (:mod:`.scan_cpu`, :mod:`.conv_cpu`) share: the lazy numba import and the rule for
when they run instead of torch's ops."""

from __future__ import annotations

import functools
import logging
from types import ModuleType

import torch

__all__ = ["FASTMATH", "numba_or_none", "serial_cpu"]

logger = logging.getLogger(__name__)

# numba's fast-math flags that allow vectorising sums (reassociation) and fused multiply-adds; not nnan/ninf, so
# NaN and inf propagate as in torch's ops.
FASTMATH = {"reassoc", "contract", "arcp", "nsz"}


@functools.cache
def numba_or_none() -> ModuleType | None:
    """numba, imported on first use, or None when it does not import (then torch's ops run)."""
    try:
        import numba
    except ImportError as exc:  # numba comes with the package's dependencies; a broken install must not break it
        logger.debug("numba is unavailable (%s): the CPU kernels are off", exc)
        return None
    return numba


def serial_cpu(tensor: torch.Tensor) -> bool:
    """Whether a kernel may replace torch's op on ``tensor``: a CPU tensor, torch on one intra-op thread (the
    thread policy's choice for small work, :mod:`avnas_nni.threads`; the kernels are serial, torch's ops
    parallelise), and neither ``torch.jit`` tracing (ONNX export) nor ``torch.compile`` compiling."""
    return (tensor.device.type == "cpu" and torch.get_num_threads() == 1 and not torch.jit.is_tracing()
            and not torch.compiler.is_compiling())
