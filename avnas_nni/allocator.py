"""Keep freed memory in the process: glibc's malloc settings for training on small machines.

A training step allocates and frees the same large activation buffers (megabytes each) every iteration. glibc
serves such blocks with fresh ``mmap`` calls (blocks above its mmap threshold) or gives freed heap memory back to
the system (above its trim threshold), so each step faults the same memory in again, page by page. On the VM
this project is measured on, a page fault costs ~10 µs: a first touch of a 7 MB activation took 15–20 ms against
0.7 ms for the same copy into memory already mapped. :func:`keep_freed_memory` raises both thresholds
(``mallopt``), so freed blocks are reused from the heap. The cost: the process keeps its peak heap until it exits.
Measured on the supernet step (issue 14, ``benchmarks/results/issue14.md``): ~4 % faster, 3 alternated pairs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import sys

__all__ = ["keep_freed_memory"]

logger = logging.getLogger(__name__)

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 * 2**20  # glibc's largest accepted value (HEAP_MAX_SIZE / 2 on 64-bit)
_TRIM_THRESHOLD = 2**31 - 1


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc's malloc reuse freed blocks instead of returning them to the system; once per process.

    Returns
    -------
    bool
        True when the settings were taken (Linux with glibc); False elsewhere, where nothing changes.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it (musl has mallopt as a no-op stub)
    except (OSError, AttributeError):
        return False
    taken = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    logger.debug("malloc: keep freed memory %s", "on" if taken else "refused")
    return taken
