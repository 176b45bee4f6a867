"""The α policy as the pipeline applies it, and the search diagnostics a run writes (arch.json, alpha_history)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from avnas_nni.pipeline import EVOLUTIONS, PROFILES, RunSettings, alpha_kwargs, run_search
from strategies import DEFAULT_ALPHA_TRAVEL, cell_diagnostics, indecision_warning, summarise_search


def test_profiles_pick_the_policies():
    quick, paper = RunSettings(**PROFILES["quick"]), RunSettings(**PROFILES["paper"])
    assert (quick.alpha_policy, quick.evolution) == ("budget", "quick")
    assert (paper.alpha_policy, paper.evolution) == ("paper", "paper")
    assert EVOLUTIONS["paper"] == {"population_size": 50, "generations": 20, "parents": 10}  # the SPOS paper's
    # budget: the same start and travel for every α strategy; paper: each strategy's own published settings
    for name in ("avnas", "darts", "proxyless"):
        expected = {"alpha_init_std": 1e-3, "alpha_travel": DEFAULT_ALPHA_TRAVEL, "keep_best": True}
        assert alpha_kwargs(RunSettings(strategy=name)) == expected
    assert alpha_kwargs(RunSettings(strategy="avnas", alpha_policy="paper"))["alpha_init_std"] == 1.0
    assert alpha_kwargs(RunSettings(strategy="darts", alpha_policy="paper"))["alpha_init_std"] == 1e-3
    assert alpha_kwargs(RunSettings(strategy="spos")) == {}
    with pytest.raises(ValueError, match="alpha_policy"):
        RunSettings(alpha_policy="fast")
    with pytest.raises(ValueError, match="evolution"):
        RunSettings(evolution="huge")


def test_diagnostics_of_probabilities():
    start = {"a": {"x": 0.5, "y": 0.5}, "b": {"p": 1 / 3, "q": 1 / 3, "r": 1 / 3}}
    end = {"a": {"x": 0.2, "y": 0.8}, "b": {"p": 0.34, "q": 0.33, "r": 0.33}}
    cells = cell_diagnostics(end, start)
    assert cells["a"]["changed"] and cells["a"]["margin"] == pytest.approx(0.6)
    assert cells["a"]["moved"] == pytest.approx(0.3) and 0 < cells["a"]["entropy"] < 1
    assert not cells["b"]["changed"] and cells["b"]["entropy"] == pytest.approx(1.0, abs=1e-3)
    summary = summarise_search(cells)
    assert summary["changed"] == 1 and summary["undecided"] == 1 and summary["cells"] == 2
    assert indecision_warning(summary) == ("search not decisive: 1 of 2 cells: the top two candidates are within "
                                           "0.02")
    assert indecision_warning(summarise_search(cell_diagnostics(start, start))).count("no cell's choice changed")


def test_a_search_run_records_where_alpha_started_and_how_it_moved(tiny_data, tmp_path):
    settings = RunSettings(strategy="avnas", data=tiny_data, bits=8, search_epochs=2, finetune_epochs=1,
                           batch_size=16)
    run_search(settings, tmp_path / "run")
    record = json.loads((tmp_path / "run" / "arch.json").read_text())
    assert set(record["init_probs"]) == set(record["probs"]) == set(record["arch"])
    for label, cell in record["init_probs"].items():  # every candidate starts (nearly) equal: N(0, 1e-3²)
        assert max(cell.values()) - min(cell.values()) < 0.01, label
    diagnostics = record["cell_diagnostics"]
    assert {k for d in diagnostics.values() for k in d} >= {"entropy", "margin", "changed", "moved", "init_choice"}
    assert record["search_summary"]["changed"] == sum(d["changed"] for d in diagnostics.values())
    assert record["search_summary"]["max_moved"] > 0.05  # α left its start (3 α steps × lr = 12 / 6 steps)
    assert record["alpha_lr"] == pytest.approx(DEFAULT_ALPHA_TRAVEL / 6)  # 48 videos / batch 16 × 2 epochs
    history = pd.read_csv(tmp_path / "run" / "alpha_history.csv")
    assert sorted(history["epoch"].unique()) == [0, 1, 2]
    sums = history.groupby(["epoch", "cell"])["probability"].sum()
    assert sums.to_numpy() == pytest.approx(1.0, abs=1e-5)
    # the exported probabilities are those after the best validation epoch (W*, α* restored): its history row
    rows = pd.read_csv(tmp_path / "run" / "history.csv")
    search = rows[rows["stage"] == "search"]
    best = int(search.loc[search["val_mAP"].idxmax(), "epoch"])  # the first of equal scores, as the strategy keeps
    kept = history[history["epoch"] == best + 1].set_index(["cell", "candidate"])["probability"]
    assert all(kept[(cell, name)] == pytest.approx(p, abs=1e-6) for cell, probs in record["probs"].items()
               for name, p in probs.items())
    assert (tmp_path / "run" / "alpha_history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    entropy = rows.loc[rows["stage"] == "search", "alpha_entropy"]
    assert len(entropy) == 2 and entropy.between(0, 1).all()
