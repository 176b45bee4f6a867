"""Tests of sign, bit packing and Hamming distances of hash codes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avnas_nni import codes
from avnas_nni.codes import hamming_distance, pack_codes, sign_codes, unpack_codes


def _random_codes(rng: np.random.Generator, n: int, q: int) -> np.ndarray:
    return rng.choice(np.array([-1, 1], dtype=np.int8), size=(n, q))


def test_sign_of_zero_is_plus_one_numpy() -> None:
    values = np.array([[-0.5, 0.0, 0.3, -0.0, -1e-30, 1e-30]], dtype=np.float32)
    result = sign_codes(values)
    assert result.dtype == np.int8
    np.testing.assert_array_equal(result, [[-1, 1, 1, 1, -1, 1]])


def test_sign_of_zero_is_plus_one_torch() -> None:
    values = torch.tensor([[-0.5, 0.0, 0.3, -0.0]], requires_grad=True)
    result = sign_codes(values)
    assert isinstance(result, torch.Tensor) and result.dtype == torch.int8
    assert result.tolist() == [[-1, 1, 1, 1]]


def test_sign_rejects_nan() -> None:
    with pytest.raises(ValueError, match="NaN"):
        sign_codes(np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="NaN"):
        sign_codes(torch.tensor([0.1, float("nan")]))


@pytest.mark.parametrize("q", [8, 16, 32, 64, 13])
def test_pack_unpack_round_trip(q: int) -> None:
    rng = np.random.default_rng(q)
    codes_pm1 = _random_codes(rng, 37, q)
    packed = pack_codes(codes_pm1)
    assert packed.dtype == np.uint8 and packed.shape == (37, (q + 7) // 8)
    unpacked = unpack_codes(packed, q)
    assert unpacked.dtype == np.int8
    np.testing.assert_array_equal(unpacked, codes_pm1)
    # Padding bits of the last byte are 0, so they never add Hamming distance.
    padding = 8 * packed.shape[1] - q
    if padding:
        assert not np.any(packed[:, -1] & np.uint8((1 << padding) - 1))


def test_bit_order_is_big_endian_with_one_for_plus() -> None:
    code = -np.ones((1, 16), dtype=np.int8)
    code[0, 0] = 1  # first code bit -> most significant bit of byte 0
    code[0, 15] = 1  # last code bit -> least significant bit of byte 1
    np.testing.assert_array_equal(pack_codes(code), [[0x80, 0x01]])
    np.testing.assert_array_equal(pack_codes(np.ones((1, 13))), [[0xFF, 0xF8]])


def test_pack_accepts_torch_and_rejects_non_pm1() -> None:
    tensor = torch.tensor([[1, -1, 1, 1, -1, -1, -1, 1]], dtype=torch.int8)
    np.testing.assert_array_equal(pack_codes(tensor), [[0b10110001]])
    with pytest.raises(ValueError, match="-1 and \\+1"):
        pack_codes(np.array([[0, 1, 1]]))
    with pytest.raises(ValueError, match="2-D"):
        pack_codes(np.ones(8))


def test_unpack_rejects_wrong_width() -> None:
    packed = pack_codes(np.ones((2, 16)))
    with pytest.raises(ValueError, match="q=24"):
        unpack_codes(packed, 24)
    with pytest.raises(ValueError, match="uint8"):
        unpack_codes(packed.astype(np.int16), 16)


@pytest.mark.parametrize("q", [8, 13, 16, 24, 32, 64, 128])
def test_hamming_equals_half_q_minus_dot(q: int) -> None:
    rng = np.random.default_rng(100 + q)
    a, b = _random_codes(rng, 23, q), _random_codes(rng, 31, q)
    expected = (q - a.astype(np.int64) @ b.T.astype(np.int64)) // 2
    result = hamming_distance(pack_codes(a), pack_codes(b))
    assert result.dtype == np.int32 and result.shape == (23, 31)
    np.testing.assert_array_equal(result, expected)
    # Chunked over rows of a (one row at a time) gives the same matrix.
    np.testing.assert_array_equal(hamming_distance(pack_codes(a), pack_codes(b), memory_mb=1e-6), expected)


def test_hamming_without_bitwise_count(monkeypatch: pytest.MonkeyPatch) -> None:
    # The NumPy < 2 path: a byte lookup table instead of np.bitwise_count.
    monkeypatch.setattr(codes, "_HAS_BITWISE_COUNT", False)
    rng = np.random.default_rng(7)
    for q in (13, 64, 96):
        a, b = _random_codes(rng, 9, q), _random_codes(rng, 11, q)
        expected = (q - a.astype(np.int64) @ b.T.astype(np.int64)) // 2
        np.testing.assert_array_equal(hamming_distance(pack_codes(a), pack_codes(b)), expected)


def test_hamming_extremes_and_errors() -> None:
    ones = pack_codes(np.ones((1, 64)))
    np.testing.assert_array_equal(hamming_distance(ones, pack_codes(-np.ones((2, 64)))), [[64, 64]])
    np.testing.assert_array_equal(hamming_distance(ones, ones), [[0]])
    with pytest.raises(ValueError, match="bytes a code"):
        hamming_distance(ones, pack_codes(np.ones((1, 32))))
    with pytest.raises(ValueError, match="packed codes"):
        hamming_distance(np.ones((1, 64)), ones)
