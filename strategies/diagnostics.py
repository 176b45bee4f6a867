"""How decisive a search was, from its architecture probabilities: per-cell entropy, margin and movement.

A one-shot search is only a search if the data, not the seed, decided the architecture. Given the
probabilities of every cell before the first step (``init_probs``) and at the end (``probs``), these
functions tell, per cell, how sure the search is (normalised entropy, the margin p1 − p2), how far it moved,
and whether its choice changed from the initial argmax; :func:`summarise_search` condenses that, and
:func:`indecision_warning` says in plain words when the search did not decide.

Everything here works on plain ``{label: {candidate: probability}}`` mappings, so it serves any strategy that
exports probabilities (one-level, DARTS, ProxylessNAS, ENAS's controller).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["Probs", "argmax", "cell_diagnostics", "summarise_search", "indecision_warning", "UNDECIDED_MARGIN"]

#: ``{label: {candidate: probability}}``
Probs = Mapping[str, Mapping[str, float]]

#: A cell whose two most likely candidates are closer than this is undecided.
UNDECIDED_MARGIN = 0.02


def argmax(probs: Mapping[str, float]) -> str:
    """The most likely candidate (ties: the first listed), the rule of every argmax export."""
    return max(probs, key=probs.__getitem__)


def cell_diagnostics(probs: Probs, init_probs: Probs | None = None) -> dict[str, dict[str, Any]]:
    """Per cell: ``entropy`` (normalised to [0, 1]: 1 = uniform), ``margin`` (p1 − p2), ``choice``; with
    ``init_probs`` also ``init_choice``, ``changed`` (argmax differs from the initial one) and ``moved``
    (the largest change of any candidate's probability).

    Cells with a single candidate have entropy 0 and margin 1.
    """
    out: dict[str, dict[str, Any]] = {}
    for label, cell in probs.items():
        values = sorted((float(p) for p in cell.values()), reverse=True)
        k = len(values)
        entropy = -sum(p * math.log(p) for p in values if p > 0) / math.log(k) if k > 1 else 0.0
        row: dict[str, Any] = {"choice": argmax(cell), "entropy": round(entropy, 6),
                               "margin": round(values[0] - values[1], 6) if k > 1 else 1.0}
        if init_probs is not None and label in init_probs:
            start = init_probs[label]
            row["init_choice"] = argmax(start)
            row["changed"] = row["choice"] != row["init_choice"]
            row["moved"] = round(max(abs(float(cell[name]) - float(start.get(name, 0.0))) for name in cell), 6)
        out[label] = row
    return out


def summarise_search(diagnostics: Mapping[str, Mapping[str, Any]],
                     undecided_margin: float = UNDECIDED_MARGIN) -> dict[str, Any]:
    """Counts over the cells: ``cells``, ``undecided`` (margin < ``undecided_margin``), ``mean_entropy`` and,
    when the initial probabilities were known, ``changed`` and ``max_moved``."""
    rows = list(diagnostics.values())
    summary: dict[str, Any] = {
        "cells": len(rows),
        "undecided": sum(r["margin"] < undecided_margin for r in rows),
        "undecided_margin": undecided_margin,
        "mean_entropy": round(sum(r["entropy"] for r in rows) / len(rows), 6) if rows else None,
    }
    if rows and all("changed" in r for r in rows):
        summary["changed"] = sum(bool(r["changed"]) for r in rows)
        summary["max_moved"] = max(r["moved"] for r in rows)
    return summary


def indecision_warning(summary: Mapping[str, Any]) -> str | None:
    """One plain sentence when the search did not decide (some cell undecided, or nothing moved), else None."""
    parts = []
    if summary.get("undecided"):
        parts.append(f"{summary['undecided']} of {summary['cells']} cells: the top two candidates are within "
                     f"{summary['undecided_margin']:g}")
    if summary.get("changed") == 0 and summary.get("cells"):
        parts.append("no cell's choice changed from the argmax of α's initialisation "
                     f"(largest probability change {summary['max_moved']:.3g})")
    return "search not decisive: " + "; ".join(parts) if parts else None
