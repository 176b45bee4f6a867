"""The Table 2 benchmark runner on a tiny config: outputs exist, hold the measured values, and are cached."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from avnas_nni.metrics import mean_ci95
from benchmarks import table2
from benchmarks.rows import ROWS, Row, register_row, select_rows

ROWS_UNDER_TEST = "AV-NAS (Arch-1),Visual only"  # a search and a row derived from its architecture


@pytest.fixture(scope="module")
def bench(tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("table2")
    argv = ["--data", tiny_data, "--rows", ROWS_UNDER_TEST, "--bits", "8", "--epochs", "1", "--finetune-epochs", "1",
            "--batch-size", "16", "--seed", "5", "--work", str(root / "work"), "--out", str(root / "out")]
    assert table2.main([*argv, "--jobs", "2"]) == 0  # two worker processes, one torch thread each
    return root, argv


def test_outputs_exist_and_hold_the_measured_values(bench):
    root, _ = bench
    out = root / "out"
    results = pd.read_csv(out / "table2.csv")
    assert list(results["row"]) == ["AV-NAS (Arch-1)", "Visual only"] and set(results["bits"]) == {8}  # registry order
    markdown = (out / "table2.md").read_text()
    for _, line in results.iterrows():
        run = root / "work" / f"{ROWS[line['row']].slug}-8b-s5"
        metrics = json.loads((run / "metrics.json").read_text())
        assert line["test_mAP@100"] == pytest.approx(metrics["test_mAP@100"], abs=5e-5)
        assert line["params"] == metrics["params"]
        assert f"| {line['row']} | {metrics['test_mAP@100']:.4f} |" in markdown
    assert "## Paired test" in markdown and "AV-NAS vs Visual only" in markdown
    assert "python -m benchmarks.table2 --data" in markdown  # the exact command is recorded
    assert "This invocation: 2 of 2 runs computed" in markdown  # and how much of it ran, and how long
    for name in ("fig5_architecture.png", "fig6_curves.png", "fig7_tsne.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name


def test_finished_rows_are_read_back_not_rerun(bench, monkeypatch):
    root, argv = bench
    before = pd.read_csv(root / "out" / "table2.csv")

    def refuse(*args, **kwargs):
        raise AssertionError("a finished row was run again")

    monkeypatch.setattr(table2, "run_search", refuse)
    monkeypatch.setattr(table2, "run_train", refuse)
    assert table2.main([*argv, "--no-figures", "--jobs", "1"]) == 0  # in this process, where the patch holds
    pd.testing.assert_frame_equal(pd.read_csv(root / "out" / "table2.csv"), before)
    assert "This invocation: 0 of 2 runs computed" in (root / "out" / "table2.md").read_text()


def test_a_finished_run_with_other_settings_is_refused_not_reused(bench, capsys):
    root, argv = bench
    other = [*argv, "--no-figures", "--jobs", "1"]
    other[other.index("--finetune-epochs") + 1] = "2"
    other[other.index("--out") + 1] = str(root / "other-out")
    assert table2.main(other) == 2
    error = capsys.readouterr().err
    assert "settings.json: reusing a finished run" in error and "'finetune_epochs': (1, 2)" in error
    assert error.count("\n") == 1 and not (root / "other-out" / "table2.csv").exists()


def test_parallel_runs_equal_serial_runs(bench):
    """Worker processes change nothing but the wall time: one run at a time gives the same numbers."""
    root, argv = bench
    serial = [*argv, "--jobs", "1", "--threads", "1", "--no-figures"]
    serial[serial.index("--work") + 1] = str(root / "serial-work")
    serial[serial.index("--out") + 1] = str(root / "serial-out")
    assert table2.main(serial) == 0
    columns = ["row", "bits", "test_mAP@100", "val_mAP@100", "params"]
    pd.testing.assert_frame_equal(pd.read_csv(root / "serial-out" / "table2.csv")[columns],
                                  pd.read_csv(root / "out" / "table2.csv")[columns])


def test_top2_row_reuses_arch1s_search_and_equals_its_own_search(tiny_data, tmp_path):
    """The authors' top-2 rule differs from Arch-1 only in pruning: run together, one search serves both (the second
    run waits for the first), and the top-2 network comes out exactly as from a search of its own."""
    def run(rows: str, work: str, jobs: str) -> None:
        assert table2.main(["--data", tiny_data, "--bits", "8", "--epochs", "1", "--finetune-epochs", "1",
                            "--batch-size", "16", "--seed", "5", "--no-figures", "--rows", rows, "--jobs", jobs,
                            "--work", str(tmp_path / work), "--out", str(tmp_path / f"{work}-out")]) == 0

    def read(work: str, row: str, name: str) -> dict:
        return json.loads((tmp_path / work / f"{row}-8b-s5" / name).read_text())

    top2 = "av-nas-top-2-pruning"
    run("AV-NAS (Arch-1),AV-NAS (top-2 pruning)", "both", "2")
    run("AV-NAS (top-2 pruning)", "alone", "1")
    shared, own, source = read("both", top2, "arch.json"), read("alone", top2, "arch.json"), \
        read("both", "av-nas-arch-1", "arch.json")
    assert shared["search_from"] == str(tmp_path / "both" / "av-nas-arch-1-8b-s5") and "search_from" not in own
    assert source["also_pruned"]["top2"] == shared["arch"] == own["arch"] != source["arch"]
    assert shared["search_history"] == source["search_history"]  # the one search's epochs and times
    assert shared["init_probs"] == source["init_probs"] and shared["search_summary"] == source["search_summary"]
    for key in ("val_mAP@100", "test_mAP@100", "params"):
        assert read("both", top2, "metrics.json")[key] == read("alone", top2, "metrics.json")[key]
    table = pd.read_csv(tmp_path / "both-out" / "table2.csv").set_index("row")
    assert table.loc["AV-NAS (top-2 pruning)", "search_wall_s"] == table.loc["AV-NAS (Arch-1)", "search_wall_s"]


def test_cross_test_and_single_modality_rows_derive_from_the_searched_architecture(tiny_data, tmp_path):
    """Arch-2 is searched on dataset B and trained from scratch on A; Visual only is Arch-1's visual branch with
    Self-Fusion; rows trained from scratch get the supernet + fine-tune epochs."""
    from avnas_nni.data import write_synthetic

    data_b = str(write_synthetic(tmp_path / "b", num_class=6, n_train=48, n_val=24, n_test=24, m=12, d=12, seed=9))
    rows = "AV-NAS (Arch-1),Visual only,AV-NAS (Arch-2),AV-NAS (Arch-2) on A"
    assert table2.main(["--data", tiny_data, "--data-b", data_b, "--bits", "8", "--epochs", "1",
                        "--finetune-epochs", "1", "--batch-size", "16", "--seed", "5", "--no-figures", "--rows", rows,
                        "--jobs", "1", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")]) == 0
    work = tmp_path / "work"

    def read(run: str, name: str) -> dict:
        return json.loads((work / f"{run}-8b-s5" / name).read_text())

    arch1, arch2 = read("av-nas-arch-1", "arch.json"), read("av-nas-arch-2", "arch.json")
    assert read("av-nas-arch-2", "settings.json")["data"] == data_b
    cross = read("av-nas-arch-2-on-a", "arch.json")
    assert cross["arch"] == arch2["arch"] and read("av-nas-arch-2-on-a", "settings.json")["data"] == tiny_data
    visual = read("visual-only", "arch.json")
    assert visual["arch"] == {**{k: v for k, v in arch1["arch"].items() if k.startswith("visual/") or k == "T"},
                              "SF": "SelfAttention"}
    assert visual["space"]["modalities"] == ["visual"]
    assert read("visual-only", "settings.json")["finetune_epochs"] == 2  # 1 supernet + 1 fine-tune epoch
    assert read("av-nas-arch-1", "settings.json")["finetune_epochs"] == 1
    table = pd.read_csv(tmp_path / "out" / "table2.csv")
    assert sorted(zip(table["row"], table["dataset"], strict=True)) == [
        ("AV-NAS (Arch-1)", "A"), ("AV-NAS (Arch-2)", "A"), ("AV-NAS (Arch-2)", "B"), ("Visual only", "A")]
    markdown = (tmp_path / "out" / "table2.md").read_text()
    assert "mAP@100 A 8 bits | mAP@100 B 8 bits" in markdown and "no claim checked" in markdown
    with pytest.raises(SystemExit, match="2"):  # a usage error: the derived row without its source
        table2.main(["--data", tiny_data, "--rows", "Visual only", "--out", str(tmp_path / "x")])


def _results(rows: dict[str, list[float]], supernet: dict[str, float] | None = None) -> pd.DataFrame:
    records = []
    for name, values in rows.items():
        for seed, value in enumerate(values):
            records.append({"row": name, "dataset": "A", "table": ROWS[name].table, "bits": 64, "seed": seed,
                            "test_mAP@100": value, "supernet_s_per_epoch": (supernet or {}).get(name),
                            "changed_cells": 10 if name == "AV-NAS (Arch-1)" else None,
                            "cells": 22 if name == "AV-NAS (Arch-1)" else None})
    return pd.DataFrame(records)


def test_claims_hold_only_when_the_paired_ci_excludes_zero():
    results = _results({"AV-NAS (Arch-1)": [0.80, 0.82, 0.81], "DARTS": [0.85, 0.86, 0.87],
                        "Visual only": [0.60, 0.61, 0.62], "Audio only": [0.30, 0.31, 0.29],
                        "Transformer": [0.70, 0.90, 0.75], **{f"Random {i}": [0.5, 0.5, 0.5] for i in range(1, 6)}},
                       supernet={"AV-NAS (Arch-1)": 40.0, "DARTS": 100.0})
    lines = table2.claims(results, [64])
    assert any("NAS baseline (64 bits): **does NOT hold**" in line and "DARTS -0.0500" in line for line in lines)
    assert any("audio-visual > visual-only > audio-only (64 bits): **holds**" in line for line in lines)
    assert any("expert network (Table 3) (64 bits): **not shown**" in line for line in lines)  # CI spans 0
    assert any("informative (64 bits): **holds**" in line and "45%" in line for line in lines)
    assert any("0.40×" in line and "holds" in line for line in lines)


def test_a_single_seed_checks_no_claim():
    lines = table2.claims(_results({"AV-NAS (Arch-1)": [0.9], "DARTS": [0.1]}), [64])
    assert lines[0].startswith("- 64 bits, 1 seed(s): no claim checked") and not any("**holds**" in line
                                                                                  for line in lines)


def test_random_rows_are_distinct_samples_over_neighbouring_seeds():
    randoms = [row for row in ROWS.values() if row.group == "random"]
    assert len({seed + row.seed_offset for row in randoms for seed in range(3346, 3356)}) == 10 * len(randoms)


def test_ci95_is_the_t_interval():
    mean, half = mean_ci95([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.302653 * 1.0 / 3 ** 0.5, rel=1e-5)
    assert np.isnan(mean_ci95([1.0])[1])  # no interval from one seed


def test_bad_rows_and_registry_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:  # a usage error, as for every avnas command
        table2.main(["--rows", "Nope", "--out", str(tmp_path)])
    assert info.value.code == 2 and "--rows: unknown row(s) ['Nope']" in capsys.readouterr().err
    for seeds in ("32:3", "32:3,64:0", "many", "32:3:1,64:1"):  # every code length needs a positive count
        with pytest.raises(SystemExit) as info:
            table2.main(["--bits", "32,64", "--seeds", seeds, "--out", str(tmp_path)])
        assert info.value.code == 2 and "--seeds: expected a positive integer or BITS:N" in capsys.readouterr().err
    assert [row.name for row in select_rows("Mamba,DARTS")] == ["DARTS", "Mamba"]  # registry order
    with pytest.raises(ValueError, match="already registered"):
        register_row(Row("DARTS", "2", "search"))
    with pytest.raises(ValueError, match="table must be"):
        register_row(Row("X", "4", "search"))
