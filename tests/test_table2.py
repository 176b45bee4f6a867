"""The Table 2 benchmark runner on a tiny config: outputs exist, hold the measured values, and are cached."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from benchmarks import table2
from benchmarks.rows import ROWS, Row, register_row, select_rows

ROWS_UNDER_TEST = "AV-NAS (Arch-1),Visual only"


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
    assert list(results["row"]) == ["Visual only", "AV-NAS (Arch-1)"] and set(results["bits"]) == {8}  # registry order
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


def test_arch2_reuses_arch1s_search_and_equals_its_own_search(tiny_data, tmp_path):
    """Arch-2 differs from Arch-1 only in pruning: run together, one search serves both (the second run waits for
    the first), and Arch-2 comes out exactly as from a search of its own."""
    def run(rows: str, work: str, jobs: str) -> None:
        assert table2.main(["--data", tiny_data, "--bits", "8", "--epochs", "1", "--finetune-epochs", "1",
                            "--batch-size", "16", "--seed", "5", "--no-figures", "--rows", rows, "--jobs", jobs,
                            "--work", str(tmp_path / work), "--out", str(tmp_path / f"{work}-out")]) == 0

    def read(work: str, row: str, name: str) -> dict:
        return json.loads((tmp_path / work / f"{row}-8b-s5" / name).read_text())

    run("AV-NAS (Arch-1),AV-NAS (Arch-2)", "both", "2")
    run("AV-NAS (Arch-2)", "alone", "1")
    shared, own, source = read("both", "av-nas-arch-2", "arch.json"), read("alone", "av-nas-arch-2", "arch.json"), \
        read("both", "av-nas-arch-1", "arch.json")
    assert shared["search_from"] == str(tmp_path / "both" / "av-nas-arch-1-8b-s5") and "search_from" not in own
    assert source["also_pruned"]["top2"] == shared["arch"] == own["arch"] != source["arch"]
    assert shared["search_history"] == source["search_history"]  # the one search's epochs and times
    for key in ("val_mAP@100", "test_mAP@100", "params"):
        assert read("both", "av-nas-arch-2", "metrics.json")[key] == read("alone", "av-nas-arch-2", "metrics.json")[key]
    table = pd.read_csv(tmp_path / "both-out" / "table2.csv").set_index("row")
    assert table.loc["AV-NAS (Arch-2)", "search_s"] == table.loc["AV-NAS (Arch-1)", "search_s"]


def test_claims_say_whether_and_by_how_much():
    results = pd.DataFrame([
        {"row": "AV-NAS (Arch-1)", "table": "2", "bits": 64, "test_mAP@100": 0.80, "supernet_s_per_epoch": 40.0},
        {"row": "DARTS", "table": "2", "bits": 64, "test_mAP@100": 0.85, "supernet_s_per_epoch": 100.0},
        {"row": "Visual only", "table": "2", "bits": 64, "test_mAP@100": 0.60, "supernet_s_per_epoch": 20.0},
        {"row": "Audio only", "table": "2", "bits": 64, "test_mAP@100": 0.30, "supernet_s_per_epoch": 20.0},
    ])
    lines = table2.claims(results, [64])
    assert any("does NOT hold" in line and "DARTS" in line and "-0.0500" in line for line in lines)
    assert any("audio-visual > visual-only > audio-only (64 bits): holds" in line for line in lines)
    assert any("0.40×" in line and "holds" in line for line in lines)


def test_bad_rows_and_registry_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:  # a usage error, as for every avnas command
        table2.main(["--rows", "Nope", "--out", str(tmp_path)])
    assert info.value.code == 2 and "--rows: unknown row(s) ['Nope']" in capsys.readouterr().err
    assert [row.name for row in select_rows("Mamba,DARTS")] == ["DARTS", "Mamba"]  # registry order
    with pytest.raises(ValueError, match="already registered"):
        register_row(Row("DARTS", "2", "search"))
    with pytest.raises(ValueError, match="table must be"):
        register_row(Row("X", "4", "search"))
