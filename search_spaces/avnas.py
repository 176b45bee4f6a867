"""The AV-NAS search space (paper §4.1, Fig. 1–2, Eq. 3–14) as an NNI ``ModelSpace``.

Every cell is an NNI ``LayerChoice`` labelled as in the paper (``visual/M1``, ``audio/U3``, ``I1``, ``F``,
``T``…) over the operators of :mod:`avnas_nni.ops`, so NNI's one-shot and multi-trial strategies can
mutate, sample and freeze it. Binary cells (D, I, F) take two inputs; they are meant to run frozen or
mixed (every NNI mixed layer forwards all arguments), not through the raw space's dry run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from nni.mutable import label_scope
from nni.nas.nn.pytorch import LayerChoice, ModelSpace
from torch import nn

from avnas_nni.errors import SettingsError
from avnas_nni.ops import build_op

from .presets import CELL_KINDS, get_preset

__all__ = ["AVNASSpace", "Encoder", "MODALITIES"]

logger = logging.getLogger(__name__)

MODALITIES = ("visual", "audio")


class _CellFactory:
    """Builds the labelled ``LayerChoice`` of a cell role from a preset and the space's op settings."""

    def __init__(self, preset: str, **op_settings):
        self.candidates = get_preset(preset)
        self.op_settings = op_settings

    def __call__(self, role: str, dim: int, label: str | None = None) -> LayerChoice:
        ops = {c.name: build_op(CELL_KINDS[role], c.op, dim, **{**self.op_settings, **c.settings})
               for c in self.candidates[role]}
        return LayerChoice(ops, label=label or role)


class Encoder(nn.Module):
    """One modality's encoder, ``Encoder(X) = E2 ∘ E1(X)`` (Eq. 3–5), with ``Up = FC_{e·d}``, ``Down = FC_d``.

    Without ``up_down`` (the plain Transformer of Table 3) Up and Down are identities and E1 works at d.
    """

    def __init__(self, cell: _CellFactory, dim: int, expand: int = 2, up_down: bool = True):
        super().__init__()
        inner = expand * dim if up_down else dim
        self.up = nn.Linear(dim, inner) if up_down else nn.Identity()
        self.down = nn.Linear(inner, dim) if up_down else nn.Identity()
        self.M1, self.U1, self.M2 = cell("M1", inner), cell("U1", inner), cell("M2", inner)
        self.U2, self.D1 = cell("U2", inner), cell("D1", inner)
        self.U3, self.M3, self.D2, self.U4 = cell("U3", dim), cell("M3", dim), cell("D2", dim), cell("U4", dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = self.up(x)
        e1 = self.U3(self.down(self.D1(self.M2(self.U1(self.M1(up))), self.U2(up))))  # Eq. 3
        return self.U4(self.D2(self.M3(e1), e1))  # Eq. 4; Eq. 5 is this call after E1


class AVNASSpace(ModelSpace):
    """Audio-visual hashing network space: encoders, interaction, fusion, transformation, hash layer.

    ``f = Tanh(FC_q(mean_t T(F(I1(Ei, Ea), I2(Ea, Ei)))))`` (Eq. 12–14, 33–34); with one modality the
    fusion becomes a self-fusion cell ``SF`` (paper Table 2, lines 21–22).

    Parameters
    ----------
    dim : int
        Feature width d of both modalities (768 for the paper's CLIP/AST features).
    length : int
        Frames per video m; inputs of another length are refused.
    bits : int
        Code length q.
    expand : int
        Up-projection factor e.
    kernel_size : int
        Kernel k of the Conv candidate (paper: k ∈ {3, 4, 5}; 4 as Mamba's conv).
    preset : str
        Candidate lists, ``"paper"`` (Table 1) or ``"authors"`` (the authors' code); see
        :mod:`search_spaces.presets`.
    modalities : sequence of str
        ``("visual", "audio")`` or one of them.
    up_down : bool
        Keep the encoders' Up/Down projections (False only for the plain Transformer of Table 3).
    num_heads : int or None
        Attention heads; None = 12 where 12 divides the width, else the largest divisor ≤ 12.
    dropout : float
        Dropout of the FFN and MLP candidates.
    d_state : int
        State size N of the SSM candidates.
    """

    def __init__(self, dim: int = 768, length: int = 25, bits: int = 64, expand: int = 2, kernel_size: int = 4,
                 preset: str = "paper", modalities: Sequence[str] = MODALITIES, up_down: bool = True,
                 num_heads: int | None = None, dropout: float = 0.1, d_state: int = 16):
        super().__init__()
        modalities = tuple(modalities)
        if not modalities or len(set(modalities)) != len(modalities) or set(modalities) - set(MODALITIES):
            raise SettingsError(f"modalities: expected 'visual', 'audio' or both, got {modalities!r}")
        for name, value in (("dim", dim), ("length", length), ("bits", bits), ("expand", expand),
                            ("kernel_size", kernel_size), ("d_state", d_state)):
            if not isinstance(value, int) or value <= 0:
                raise SettingsError(f"{name}: expected a positive integer, got {value!r}")
        self.dim, self.length, self.bits, self.modalities = dim, length, bits, modalities
        cell = _CellFactory(preset, kernel_size=kernel_size, num_heads=num_heads, dropout=dropout,
                            d_state=d_state)
        for modality in modalities:
            with label_scope(modality):
                setattr(self, modality, Encoder(cell, dim, expand, up_down))
        if len(modalities) == 2:
            self.I1, self.I2 = cell("I", dim, "I1"), cell("I", dim, "I2")
            self.F = cell("F", dim)
        else:
            self.SF = cell("SF", dim)
        self.T = cell("T", dim)
        self.hash = nn.Linear(dim, bits)

    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Map (B, m, d) visual and audio features to (B, q) codes in (−1, 1); sign them for binary codes."""
        self._check_input(visual=visual, audio=audio)
        if len(self.modalities) == 2:
            ei, ea = self.visual(visual), self.audio(audio)  # Eq. 12–13
            fo = self.F(self.I1(ei, ea), self.I2(ea, ei))  # Eq. 14
        else:
            fo = self.SF(getattr(self, self.modalities[0])(visual if self.modalities[0] == "visual" else audio))
        return torch.tanh(self.hash(self.T(fo).mean(dim=1)))  # Eq. 33–34, mean pooling over time

    def _check_input(self, **inputs: torch.Tensor) -> None:
        for name in self.modalities:
            x = inputs[name]
            if x.dim() != 3 or x.shape[1:] != (self.length, self.dim):
                raise ValueError(f"{name} features: expected shape (batch, {self.length}, {self.dim}), "
                                 f"got {tuple(x.shape)}")
