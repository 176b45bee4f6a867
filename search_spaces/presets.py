"""Candidate lists per cell: the paper's Table 1 space and the authors' code's wider space.

A preset maps each cell role (``M1``…``M3``, ``U1``…``U4``, ``D1``, ``D2``, ``I``, ``F``, ``T`` and the
single-modality self-fusion ``SF``) to its candidates. A candidate is the name the architecture records,
the registered operator it builds (:func:`avnas_nni.ops.build_op`) and extra operator settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from avnas_nni.errors import SettingsError

__all__ = ["Candidate", "PRESETS", "CELL_KINDS", "get_preset"]


@dataclass(frozen=True)
class Candidate:
    """One candidate operator of a cell.

    Parameters
    ----------
    name : str
        The choice's name in samples and exported architectures (``"Conv"``, ``"Conv4"``…).
    op : str
        The operator's registered name in :mod:`avnas_nni.ops` for the cell's kind.
    settings : dict
        Operator settings that override the space's (e.g. ``{"kernel_size": 4}``).
    """

    name: str
    op: str
    settings: dict[str, Any] = field(default_factory=dict)


#: Operator kind of each cell role (the registry's key in :mod:`avnas_nni.ops`).
CELL_KINDS: dict[str, str] = {
    "M1": "M", "M2": "M", "M3": "M",
    "U1": "U", "U2": "U", "U3": "U", "U4": "U",
    "D1": "D", "D2": "D",
    "I": "I", "F": "F", "T": "T", "SF": "T",
}


def _same(*names: str) -> tuple[Candidate, ...]:
    return tuple(Candidate(n, n) for n in names)


_M_PAPER = _same("FFN", "MLP", "Conv", "SelfAttention", "SelfSSM", "Skip")
_U_PAPER = _same("SiLU", "LayerNorm", "Skip")
_D = _same("Add", "Hadamard")
_TAIL = {"I": _same("CrossAttention", "CrossSSM"), "F": _same("Add", "GatedAttention"),
         "T": _same("SelfAttention", "SelfSSM"), "SF": _same("SelfAttention", "SelfSSM")}

# The authors' code: Conv_k with k ∈ {3,4,5} as three candidates, and U split by width
# (SiLU/Skip at e·d before the binary cell, LayerNorm/Skip at d after Down).
_M_AUTHORS = (
    *_same("Skip", "SelfAttention", "SelfSSM"),
    *(Candidate(f"Conv{k}", "Conv", {"kernel_size": k}) for k in (3, 4, 5)),
    *_same("MLP", "FFN"),
)

PRESETS: MappingProxyType[str, MappingProxyType[str, tuple[Candidate, ...]]] = MappingProxyType({
    "paper": MappingProxyType({
        **{f"M{i}": _M_PAPER for i in (1, 2, 3)},
        **{f"U{i}": _U_PAPER for i in (1, 2, 3, 4)},
        "D1": _D, "D2": _D, **_TAIL,
    }),
    "authors": MappingProxyType({
        **{f"M{i}": _M_AUTHORS for i in (1, 2, 3)},
        "U1": _same("SiLU", "Skip"), "U2": _same("SiLU", "Skip"),
        "U3": _same("LayerNorm", "Skip"), "U4": _same("LayerNorm", "Skip"),
        "D1": _D, "D2": _D, **_TAIL,
    }),
})


def get_preset(name: str) -> MappingProxyType[str, tuple[Candidate, ...]]:
    """Return the candidate lists of preset ``name``.

    Raises
    ------
    ValueError
        If the preset is unknown (the message lists the known ones).
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise SettingsError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}") from None
