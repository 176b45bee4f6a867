"""The contention benchmark's bookkeeping (benchmarks/contention.py): ratios to 'alone', the goal marks, a
stopped scenario, and the report's record of commit, machine and command. The benchmark itself is not a test."""

from __future__ import annotations

from pathlib import Path

from benchmarks import contention


def test_ratios_marks_and_report(tmp_path, monkeypatch):
    rows = {"alone": {"search": 10.0, "search_each": [10.0], "finetune": 2.0, "finetune_each": [2.0]},
            "beside an identical run": {"search": 24.0, "search_each": [23.0, 24.0], "finetune": 6.0,
                                        "finetune_each": [5.0, 6.0]},
            "beside a busy loop": {"error": "stopped after 5 s (--timeout)"}}

    def fake(name, args, work):
        return {"scenario": name, "runs": 1, "wall_seconds": 1.0, **rows[name],
                "threads": {"intra_op": 1, "wait_policy": "PASSIVE", "reason": "test"}}

    monkeypatch.setattr(contention, "_scenario", fake)
    args = contention.build_parser().parse_args(["--steps", "3"])
    result = contention.run_scenarios(args, tmp_path)
    pair = result[1]
    assert pair["search_ratio"] == 2.4 and pair["finetune_ratio"] == 3.0
    markdown = contention.write_report(result, args, ["--steps", "3"], tmp_path / "out", (0.1, 0.2, 0.3)).read_text()
    assert "24.0 s = 2.40× ✓ (runs: 23.0, 24.0)" in markdown  # within the 2.5× goal
    assert "6.0 s = 3.00× ✗" in markdown  # over it
    assert "stopped after 5 s" in markdown
    assert "nproc" in markdown and "--steps 3" in markdown and "3 training steps per epoch" in markdown
    assert (tmp_path / "out" / "contention.json").is_file()


def test_epoch_seconds_reads_history(tmp_path: Path):
    (tmp_path / "history.csv").write_text("stage,epoch,seconds\nsearch,0,4.0\nsearch,1,6.0\nsearch,2,50.0\n"
                                          "finetune,0,1.0\n")
    assert contention._epoch_seconds(tmp_path) == {"search": 6.0, "finetune": 1.0}
