"""D cell candidates (binary, paper Table 1): Add and Hadamard; Add is also the F cell's Add."""

from __future__ import annotations

import logging

import torch

from .registry import ParameterFreeOp, register

__all__ = ["Add", "Hadamard"]

logger = logging.getLogger(__name__)


@register("D", "Add")
@register("F", "Add")
class Add(ParameterFreeOp):
    """Elementwise sum ``x + y``."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(batch, m, d), (batch, m, d) -> (batch, m, d)."""
        return x + y


@register("D", "Hadamard")
class Hadamard(ParameterFreeOp):
    """Elementwise product ``x * y``."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(batch, m, d), (batch, m, d) -> (batch, m, d)."""
        return x * y
