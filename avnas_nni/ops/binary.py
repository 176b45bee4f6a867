"""D cell candidates (binary, paper Table 1): Add and Hadamard; Add is also the F cell's Add."""

from __future__ import annotations

import logging

import torch
from torch import nn

from .registry import register

__all__ = ["Add", "Hadamard"]

logger = logging.getLogger(__name__)


@register("D", "Add")
@register("F", "Add")
class Add(nn.Module):
    """Elementwise sum ``x + y``.

    Parameters
    ----------
    dim : int
        Width d (unused).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(batch, m, d), (batch, m, d) -> (batch, m, d)."""
        return x + y


@register("D", "Hadamard")
class Hadamard(nn.Module):
    """Elementwise product ``x * y``.

    Parameters
    ----------
    dim : int
        Width d (unused).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(batch, m, d), (batch, m, d) -> (batch, m, d)."""
        return x * y
