"""Pieces several video-hashing methods share: the fixed sinusoidal position table and the straight-through
binarisations (sign forward, a surrogate gradient backward).

They live here, not in the first method that needed them, so no method imports a sibling's private helpers.
"""

from __future__ import annotations

import logging

import torch

__all__ = ["binarise", "binarise_identity_gradient", "sinusoid_table"]

logger = logging.getLogger(__name__)


def sinusoid_table(length: int, dim: int) -> torch.Tensor:
    """Fixed positions ``(length, dim)``: sin on even, cos on odd columns of ``pos / 10000^(2⌊j/2⌋/dim)``.

    Parameters
    ----------
    length : int
        Number of positions (frames).
    dim : int
        Width of one position vector.

    Returns
    -------
    torch.Tensor
        float32 ``(length, dim)``, computed in float64.
    """
    position = torch.arange(length, dtype=torch.float64)[:, None]
    rate = torch.pow(10000.0, 2 * (torch.arange(dim) // 2) / dim).to(torch.float64)
    table = position / rate
    table[:, 0::2], table[:, 1::2] = table[:, 0::2].sin(), table[:, 1::2].cos()
    return table.float()


def binarise(x: torch.Tensor) -> torch.Tensor:
    """±1 (``+1`` where ``x > 0``) forward; gradient of ``clamp(x, −1, 1)`` backward (straight-through).

    The estimator of ConMH, BTH, SSTH and DKPH's released code: the gradient passes inside [−1, 1] and is zero
    outside.
    """
    soft = x.clamp(-1.0, 1.0)
    return soft + (torch.where(x > 0, 1.0, -1.0).to(x.dtype) - soft).detach()


def binarise_identity_gradient(x: torch.Tensor) -> torch.Tensor:
    """±1 (``+1`` where ``x > 0``) forward; the identity backward, however far ``x`` lies outside [−1, 1]."""
    return x + (torch.where(x > 0, 1.0, -1.0).to(x.dtype) - x).detach()
