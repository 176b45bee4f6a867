"""What every benchmark script shares: the machine line, JSON results and CSV + Markdown tables."""

from __future__ import annotations

import json
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from avnas_nni.codes import sign_codes
from avnas_nni.evaluator import encode, load_split
from avnas_nni.pipeline import load_run_model

__all__ = ["machine", "commit", "save_json", "save_table", "run_codes"]


def machine() -> str:
    """CPU/GPU model and torch threads, for the record next to every number."""
    cpu = platform.processor() or platform.machine()
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cpu}{gpu}, {torch.get_num_threads()} torch threads, Python {platform.python_version()}"


def commit() -> str:
    """The repository's commit (short hash, ``+dirty`` with uncommitted changes), or ``unknown`` outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def save_json(path: Path | None, result: dict[str, Any]) -> None:
    """Write ``result`` as JSON to ``path`` when one was asked for, with the commit it was measured at."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"commit": commit(), **result}, indent=2) + "\n")
    print(f"wrote {path}")


def save_table(table: pd.DataFrame, out: Path, title: str, module: str, argv: list[str] | None,
               notes: str = "", made_at: str | None = None) -> str:
    """Write ``out.csv`` and ``out.md`` (title, exact command, commit, machine, notes, table); return the Markdown.

    ``made_at``: the commit the measurements ran at (:func:`commit` taken when they started), if not now.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out.with_suffix(".csv"), index=False, float_format="%.4f")
    command = f"python -m {module} " + shlex.join(argv if argv is not None else sys.argv[1:])
    header = f"Command: `{command.strip()}`  \nCommit: {made_at or commit()}  \nMachine: {machine()}  \n"
    text = (f"# {title}\n\n{header}{notes}\n\n"
            + table.to_markdown(index=False, floatfmt=".4f") + "\n")
    out.with_suffix(".md").write_text(text)
    return text


def run_codes(run: str | Path, split: str = "test") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """±1 codes of a finished run: ``(query codes, query labels, database codes, database labels)``.

    Queries are ``split``, the database is the run's retrieval list; labels are multi-hot.
    """
    model, settings, _ = load_run_model(run)
    model.eval()
    visual, audio, labels = load_split(settings.data, split)
    db_visual, db_audio, db_labels = load_split(settings.data, "retrieval")
    query = sign_codes(encode(model, visual, audio)).numpy()
    database = sign_codes(encode(model, db_visual, db_audio)).numpy()
    return query, labels, database, db_labels
