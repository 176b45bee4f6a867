"""Inspecting a space: its cells, the size of the architecture set, and checking samples against it."""

from __future__ import annotations

import math
from typing import Any

from nni.mutable import Categorical
from nni.nas.nn.pytorch import ModelSpace

from avnas_nni.errors import SettingsError

__all__ = ["cells", "count_architectures", "check_sample"]


def cells(space: ModelSpace) -> dict[str, list[Any]]:
    """Label → candidate names of every categorical choice of ``space``, in declaration order."""
    out: dict[str, list[Any]] = {}
    for label, mutable in space.simplify().items():
        if not isinstance(mutable, Categorical):
            raise TypeError(f"{label}: only categorical choices can be listed, got {type(mutable).__name__}")
        out[label] = list(mutable.values)
    return out


def count_architectures(space: ModelSpace) -> int:
    """Number of distinct architectures: the product of the candidate counts of all choices.

    For the paper preset this is (6³·3⁴·2²)²·2²·2·2 = 78,364,164,096 ("over 7.83 × 10¹⁰").
    """
    return math.prod(len(values) for values in cells(space).values())


def check_sample(space: ModelSpace, sample: dict[str, Any], source: str = "architecture") -> None:
    """Raise a one-line ``ValueError`` unless ``sample`` names exactly the space's cells with valid choices.

    A cell may also hold a list of two distinct candidates (Arch-2 pruning, summed).

    Parameters
    ----------
    source : str
        Where the sample came from (a file name), used in the message.
    """
    known = cells(space)
    missing = [label for label in known if label not in sample]
    if missing:
        raise SettingsError(f"{source}: missing choice for cell(s) {missing}")
    extra = [label for label in sample if label not in known]
    if extra:
        raise SettingsError(f"{source}: cell(s) {extra} are not in this space; its cells are {list(known)}")
    for label, choice in sample.items():
        if isinstance(choice, list):  # Arch-2 pruning keeps two candidates of a cell
            if len(choice) != 2 or choice[0] == choice[1] or any(c not in known[label] for c in choice):
                raise SettingsError(f"{source}: cell {label!r} lists {choice!r}; expected two distinct candidates of "
                                 f"{known[label]}")
            continue
        if choice not in known[label]:
            raise SettingsError(f"{source}: cell {label!r} has no candidate {choice!r}; expected one of {known[label]}")
