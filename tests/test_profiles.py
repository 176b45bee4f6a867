"""One settings resolver and one profile table: the CLI, the configs and the docs agree with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from avnas_nni import cli
from avnas_nni.pipeline import PROFILES, RunSettings
from benchmarks.table2 import BENCH_PROFILES

DOCS = Path(cli.__file__).resolve().parent.parent / "docs" / "usage.md"


def test_resolve_applies_the_profile_then_the_overrides():
    settings = RunSettings.resolve("bench-quick", bits=32, finetune_epochs=None, seed=7)
    assert (settings.search_epochs, settings.finetune_epochs, settings.bits, settings.seed) == (2, 3, 32, 7)
    assert RunSettings.resolve("paper").alpha_policy == "paper"
    with pytest.raises(ValueError, match="profile: expected one of"):
        RunSettings.resolve("fast")
    with pytest.raises(ValueError, match=r"unknown name\(s\) \['colour'\]"):
        RunSettings.resolve("quick", colour="red")


def test_distinct_budgets_have_distinct_names():
    budgets = {(p["search_epochs"], p["finetune_epochs"], p["batch_size"]) for p in PROFILES.values()}
    assert len(budgets) == len(PROFILES)
    assert cli.PROFILE_NAMES == tuple(PROFILES)
    assert set(BENCH_PROFILES) <= set(PROFILES) and all(BENCH_PROFILES[k] == PROFILES[k] for k in BENCH_PROFILES)


def test_the_docs_table_is_the_profile_table():
    text = DOCS.read_text()
    for name, p in PROFILES.items():
        row = (f"| {name} | {p['search_epochs']} | {p['finetune_epochs']} | {p['batch_size']} | {p['finetune_lr']:g} "
               f"| {p['alpha_policy']} | {p['evolution']} |")
        assert row in text, row
