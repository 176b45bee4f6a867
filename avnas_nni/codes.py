"""Hash codes: sign, bit packing and Hamming distances.

A code is ``b = Sign(f) ∈ {-1, +1}^q`` with ``Sign(0) = +1`` (SPEC §2). Packed codes store one bit per code
bit, **1 for +1 and 0 for -1**, eight bits a byte in NumPy's ``packbits`` big-endian order: code bit ``j``
is bit ``7 - j % 8`` (the most significant first) of byte ``j // 8``. When ``q`` is not a multiple of 8 the
unused low bits of the last byte are 0, so two packed codes never differ there.

Torch is imported only when a torch tensor is passed in, so :mod:`avnas_nni.metrics` stays NumPy-only.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

__all__ = ["sign_codes", "pack_codes", "unpack_codes", "hamming_distance"]

logger = logging.getLogger(__name__)

# np.bitwise_count arrived in NumPy 2.0; older NumPy uses a byte lookup table (slower, same result).
_HAS_BITWISE_COUNT = hasattr(np, "bitwise_count")
_POPCOUNT_BYTE = np.array([bin(value).count("1") for value in range(256)], dtype=np.uint8)


def _is_torch_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def _to_numpy(value: Any) -> np.ndarray:
    if _is_torch_tensor(value):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def sign_codes(f: Any) -> Any:
    """Binarise real outputs: ``+1`` where ``f >= 0`` (so ``Sign(0) = +1``), ``-1`` elsewhere.

    Parameters
    ----------
    f : torch.Tensor or array_like
        Real-valued network outputs of any shape, typically (n, q) tanh outputs.

    Returns
    -------
    torch.Tensor or numpy.ndarray
        Same shape, dtype int8 with values in {-1, +1}; a torch tensor (same device) for a torch input,
        a NumPy array otherwise.

    Raises
    ------
    ValueError
        If ``f`` holds NaN (its sign is undefined, and a silent -1 would hide a diverged network).
    """
    if _is_torch_tensor(f):
        import torch

        if f.is_floating_point() and bool(torch.isnan(f).any()):
            raise ValueError("sign_codes: f holds NaN values; expected finite network outputs")
        return torch.where(f >= 0, 1, -1).to(torch.int8)
    array = np.asarray(f)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"sign_codes: f must be numeric, got dtype {array.dtype}")
    if array.dtype.kind == "f" and np.isnan(array).any():
        raise ValueError("sign_codes: f holds NaN values; expected finite network outputs")
    return np.where(array >= 0, np.int8(1), np.int8(-1))


def _check_pm1(codes: np.ndarray, name: str, where: str) -> None:
    if codes.ndim != 2:
        raise ValueError(f"{where}: {name} must be a 2-D (n, q) array of ±1 codes, got shape {codes.shape}")
    if codes.dtype.kind not in "iuf":
        raise ValueError(f"{where}: {name} must hold ±1 numbers, got dtype {codes.dtype}")
    if codes.size and not np.all((codes == 1) | (codes == -1)):
        raise ValueError(f"{where}: {name} must hold only -1 and +1 (use sign_codes first)")


def pack_codes(codes_pm1: Any) -> np.ndarray:
    """Pack ±1 codes into bits: 1 for +1, 0 for -1, big-endian within each byte.

    Parameters
    ----------
    codes_pm1 : torch.Tensor or array_like
        Shape (n, q), values in {-1, +1}.

    Returns
    -------
    numpy.ndarray
        uint8 of shape (n, ceil(q / 8)); code bit ``j`` is bit ``7 - j % 8`` of byte ``j // 8`` and the
        padding bits of the last byte are 0.
    """
    codes = _to_numpy(codes_pm1)
    _check_pm1(codes, "codes_pm1", "pack_codes")
    return np.packbits(codes > 0, axis=1, bitorder="big")


def unpack_codes(packed: Any, q: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`.

    Parameters
    ----------
    packed : array_like
        uint8 of shape (n, ceil(q / 8)).
    q : int
        Number of code bits; the padding bits of the last byte are ignored.

    Returns
    -------
    numpy.ndarray
        int8 of shape (n, q) with values in {-1, +1}.
    """
    array = _to_numpy(packed)
    if array.dtype != np.uint8 or array.ndim != 2:
        raise ValueError(
            f"unpack_codes: packed must be a 2-D uint8 array, got dtype {array.dtype} shape {array.shape}"
        )
    if q < 1 or array.shape[1] != math.ceil(q / 8):
        raise ValueError(
            f"unpack_codes: packed has {array.shape[1]} bytes a code, q={q} needs {math.ceil(max(q, 0) / 8)}"
        )
    bits = np.unpackbits(array, axis=1, count=q, bitorder="big").astype(np.int8)
    return bits * np.int8(2) - np.int8(1)


def _as_words(packed: np.ndarray) -> np.ndarray:
    """View (n, nbytes) packed codes as the widest unsigned words that tile a code (uint64 when possible)."""
    contiguous = np.ascontiguousarray(packed)
    n_bytes = contiguous.shape[1]
    for dtype in (np.uint64, np.uint32, np.uint16):
        size = np.dtype(dtype).itemsize
        if n_bytes % size == 0:
            return contiguous.view(dtype)
    return contiguous


def _hamming_words(words_a: np.ndarray, words_b: np.ndarray) -> np.ndarray:
    """Hamming distances (na, nb) between two blocks of word views, as the narrowest unsigned dtype.

    Allocates about ``na * nb * (nbytes + 3)`` bytes; callers bound ``na`` to stay in budget.
    """
    xor = words_a[:, None, :] ^ words_b[None, :, :]
    if _HAS_BITWISE_COUNT:
        counts = np.bitwise_count(xor)  # uint8 per word
    else:
        counts = _POPCOUNT_BYTE[xor.view(np.uint8)]
    del xor
    if counts.shape[-1] == 1:
        return counts[..., 0]
    n_bits = 8 * words_a.shape[1] * words_a.itemsize
    return counts.sum(axis=-1, dtype=np.uint16 if n_bits < 2**16 else np.uint32)


def _check_packed(packed: Any, name: str, where: str) -> np.ndarray:
    array = _to_numpy(packed)
    if array.dtype != np.uint8 or array.ndim != 2 or array.shape[1] == 0:
        raise ValueError(
            f"{where}: {name} must be packed codes, a 2-D uint8 array (n, ceil(q/8)), "
            f"got dtype {array.dtype} shape {array.shape}"
        )
    return array


def hamming_distance(packed_a: Any, packed_b: Any, memory_mb: float = 256) -> np.ndarray:
    """All-pairs Hamming distances between packed codes, by XOR and bit counting.

    Parameters
    ----------
    packed_a, packed_b : array_like
        uint8 packed codes (see :func:`pack_codes`) of shapes (na, nbytes) and (nb, nbytes). The
        padding bits must be equal (``pack_codes`` leaves them 0).
    memory_mb : float
        Budget for the temporaries; rows of ``packed_a`` are processed in chunks to stay within it.

    Returns
    -------
    numpy.ndarray
        int32 of shape (na, nb), equal to ``(q - b_a · b_b) / 2`` on the ±1 codes.

    Notes
    -----
    The bytes are viewed as uint64 words when ``nbytes`` is a multiple of 8 (q a multiple of 64), else as
    uint32/uint16/uint8, and counted with ``np.bitwise_count`` (NumPy >= 2; a lookup table otherwise).
    """
    a = _check_packed(packed_a, "packed_a", "hamming_distance")
    b = _check_packed(packed_b, "packed_b", "hamming_distance")
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"hamming_distance: packed_a has {a.shape[1]} bytes a code but packed_b has {b.shape[1]}"
        )
    words_a, words_b = _as_words(a), _as_words(b)
    out = np.empty((a.shape[0], b.shape[0]), dtype=np.int32)
    bytes_per_row = max(1, b.shape[0]) * (a.shape[1] + 3 + 4)
    rows = max(1, int(memory_mb * 2**20 // bytes_per_row))
    for start in range(0, a.shape[0], rows):
        out[start : start + rows] = _hamming_words(words_a[start : start + rows], words_b)
    return out
