"""F cell candidates (fusion, paper Table 1): Add (see :mod:`.binary`) and GatedAttention."""

from __future__ import annotations

import logging

import torch
from torch import nn

from .binary import Add
from .registry import register

__all__ = ["Add", "GatedAttention"]

logger = logging.getLogger(__name__)


@register("F", "GatedAttention")
class GatedAttention(nn.Module):
    """``rho * x + (1 - rho) * y`` with one learnable scalar rho in (0, 1).

    rho is stored as a logit (parameter ``rho_logit``) and read through a sigmoid, so it stays in
    (0, 1) under any optimiser step; it starts at 0.5.

    Parameters
    ----------
    dim : int
        Width d (unused).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.rho_logit = nn.Parameter(torch.zeros(()))

    @property
    def rho(self) -> torch.Tensor:
        """The current mixing weight, a 0-d tensor in (0, 1)."""
        return torch.sigmoid(self.rho_logit)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(batch, m, d), (batch, m, d) -> (batch, m, d)."""
        rho = self.rho
        return rho * x + (1 - rho) * y
