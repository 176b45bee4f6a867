"""The run directory has one owner: no run file name is spelled outside ``avnas_nni/runs.py``."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: File names of a run directory (avnas_nni.runs's docstring lists them).
RUN_FILES = re.compile(r"""["'](settings\.json|arch\.json|metrics\.json|model\.safetensors|history\.csv|run\.log|"""
                       r"""alpha_history\.(csv|png)|model\.onnx|pruned_init[^"']*|[^"'/]*_ap\.npy|"""
                       r"""(last|last\.prev|best)\.ckpt|\.lock)["']""")


def _offenders(root: Path) -> list[str]:
    found = []
    for folder in ("avnas_nni", "benchmarks", "strategies", "search_spaces"):
        for path in sorted((root / folder).rglob("*.py")):
            if path.relative_to(root).as_posix() == "avnas_nni/runs.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if RUN_FILES.search(line.split("#")[0]):
                    found.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    return found


def test_no_run_file_name_outside_runs_module():
    assert _offenders(ROOT) == []


def test_the_check_finds_a_spelled_name(tmp_path):
    (tmp_path / "avnas_nni").mkdir()
    (tmp_path / "avnas_nni" / "x.py").write_text('path = run / "metrics.json"\nother = f"pruned_init_{rule}.st"\n'
                                                  'ckpt = stage / "last.prev.ckpt"\n')
    assert len(_offenders(tmp_path)) == 3
