"""The house's import rules (DESIGN.md, "Rooms and who may enter them"), as import-linter contracts.

The contracts live in pyproject.toml (``[tool.importlinter]``). Each check runs in a fresh interpreter in the
directory whose packages it checks, so the packages this test process already imported cannot stand in.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter")

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("avnas_nni", "search_spaces", "strategies", "benchmarks")
LINT = ("import sys; sys.path.insert(0, '.'); from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))")


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", LINT], cwd=root, capture_output=True, text=True, timeout=300)


def test_the_tree_keeps_the_import_rules():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("strategies/pruning.py", "import search_spaces", "strategies are generic"),
    ("strategies/_hooks.py", "from avnas_nni.evaluator import HashingModule", "strategies are generic"),
    ("avnas_nni/ops/registry.py", "import avnas_nni.metrics", "ops import torch only"),
    ("avnas_nni/metrics.py", "def _face():\n    import benchmarks.table2", "nothing imports the benchmarks"),
    ("avnas_nni/methods/bth.py", "from avnas_nni.methods.conmh import ConMH", "methods are independent"),
])
def test_a_broken_rule_fails(tmp_path, module, line, contract):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "results"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with open(tmp_path / module, "a") as fh:
        fh.write(f"\n\n{line}\n")
    result = _lint(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{contract}" in result.stdout and "BROKEN" in result.stdout
