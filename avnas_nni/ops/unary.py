"""U cell candidates (unary, paper Table 1): SiLU, LayerNorm and Skip (Skip lives in :mod:`.sequence`)."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from .registry import ParameterFreeOp, register
from .sequence import Skip

__all__ = ["LayerNorm", "SiLU", "Skip"]

logger = logging.getLogger(__name__)


@register("U", "SiLU")
class SiLU(ParameterFreeOp):
    """SiLU activation ``x * sigmoid(x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Elementwise SiLU."""
        return F.silu(x)


@register("U", "LayerNorm")
class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm(d)`` over the channel axis (parameters ``weight``, ``bias``).

    Parameters
    ----------
    dim : int
        Width d.
    """

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
