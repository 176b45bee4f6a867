"""Read a strategy-comparison NNI experiment back: every trial's final metric, as a table and a plot.

A running experiment is read through NNI's REST API (its port is in NNI's experiment registry); a stopped
one from its SQLite database (``<experiment dir>/db/nni.sqlite``), opened read-only. The final metric each
trial of :mod:`avnas_nni.trial` reports carries its real configuration (strategy, bits, seed), so the table
does not depend on NNI's parameter ids.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd

from avnas_nni.errors import AVNASError
from avnas_nni.metrics import mean_ci95

__all__ = ["CompareError", "experiment_dir", "read_trials", "summarise", "write_comparison"]

logger = logging.getLogger(__name__)

#: NNI's default experiment working directory.
DEFAULT_ROOT = Path("~/nni-experiments").expanduser()


class CompareError(AVNASError):
    """An experiment that cannot be found or read."""


def experiment_dir(experiment: str | Path, root: str | Path | None = None) -> Path:
    """The directory of ``experiment``: a path to it, or an id under ``root`` (default ``~/nni-experiments``)."""
    path = Path(experiment).expanduser()
    if path.is_dir():
        return path
    candidate = Path(root or DEFAULT_ROOT).expanduser() / str(experiment)
    if candidate.is_dir():
        return candidate
    raise CompareError(f"{experiment}: no such experiment directory (looked for {path} and {candidate})")


def _registry_port(directory: Path) -> int | None:
    """The port of a running experiment from NNI's registry; None when it is stopped or unknown.

    nnictl keeps one registry, ``~/nni-experiments/.experiment``, whatever the experiment's working
    directory; a registry next to the experiment directory is read first.
    """
    for registry in dict.fromkeys((directory.parent / ".experiment", DEFAULT_ROOT / ".experiment")):
        try:
            entries = json.loads(registry.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        entry = entries.get(directory.name)
        if entry is not None:
            return entry.get("port") if entry.get("status") == "RUNNING" else None
    return None


def _metric(value: str, trial_id: str) -> Any:
    """A trial's final metric; a malformed one is named at warning level and read as missing (None)."""
    try:
        decoded = json.loads(value)
        # NNI stores the trial's JSON-serialised metric as a JSON string: decode twice.
        return json.loads(decoded) if isinstance(decoded, str) else decoded
    except (json.JSONDecodeError, TypeError) as exc:
        logger.warning("trial %s: malformed final metric, read as missing (%s): %.80r", trial_id, exc, value)
        return None


def _parameters(text: str, trial_id: str) -> dict[str, Any]:
    """A trial's parameters from NNI's ``{"parameters": {...}, ...}`` record; a malformed one is named at warning
    level and read as none."""
    try:
        record = json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        logger.warning("trial %s: malformed parameter record, read as none (%s): %.80r", trial_id, exc, text)
        return {}
    parameters = record.get("parameters", {}) if isinstance(record, dict) else None
    if not isinstance(parameters, dict):
        logger.warning("trial %s: parameter record without a 'parameters' object, read as none: %.80r",
                       trial_id, text)
        return {}
    return parameters


def _new_trial(trial_id: str) -> dict[str, Any]:
    return {"trial": trial_id, "status": "UNKNOWN", "parameters": {}, "final": None, "intermediate": 0}


def _trials_from_db(database: Path) -> list[dict[str, Any]]:
    if not database.is_file():
        raise CompareError(f"{database}: no NNI database (is this an NNI experiment directory?)")
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
            events = conn.execute("select trialJobId, event, data from TrialJobEvent order by timestamp").fetchall()
            metrics = conn.execute("select trialJobId, type, sequence, data from MetricData "
                                   "order by timestamp").fetchall()
    except sqlite3.Error as exc:
        raise CompareError(f"{database}: cannot read the NNI database ({exc})") from None
    trials: dict[str, dict[str, Any]] = {}
    for trial_id, event, data in events:
        if trial_id is None:
            continue
        trial = trials.setdefault(trial_id, _new_trial(trial_id))
        trial["status"] = event
        if event == "WAITING" and data:
            trial["parameters"] = _parameters(data, trial_id)
    for trial_id, kind, _, data in metrics:
        trial = trials.setdefault(trial_id, _new_trial(trial_id))
        if kind == "FINAL":
            trial["final"] = _metric(data, trial_id)
        else:
            trial["intermediate"] += 1
    return list(trials.values())


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (a loopback URL we build)
        return json.loads(response.read().decode())


def _trials_from_rest(port: int) -> list[dict[str, Any]]:
    base = f"http://127.0.0.1:{port}/api/v1/nni"
    trials = []
    for job in _get(f"{base}/trial-jobs"):
        parameters = {}
        for text in job.get("hyperParameters") or []:
            parameters = _parameters(text, job["trialJobId"])
        final = job.get("finalMetricData") or []
        trials.append({"trial": job["trialJobId"], "status": job.get("status"), "parameters": parameters,
                       "final": _metric(final[-1]["data"], job["trialJobId"]) if final else None,
                       "intermediate": None})
    return trials


def read_trials(experiment: str | Path, root: str | Path | None = None) -> tuple[list[dict[str, Any]], str]:
    """Every trial of an experiment and where it was read from (``"rest"`` or ``"database"``)."""
    directory = experiment_dir(experiment, root)
    port = _registry_port(directory)
    if port:
        try:
            return _trials_from_rest(port), "rest"
        except (urllib.error.URLError, OSError, json.JSONDecodeError) as exc:
            logger.info("REST API on port %s unreachable (%s); reading the database", port, exc)
    return _trials_from_db(directory / "db" / "nni.sqlite"), "database"


def summarise(trials: list[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one line per trial, mean/std/95 % CI half-width/count of test mAP and mean search seconds per strategy and
    bits; the CI is over the trials of a cell, i.e. its seeds, and NaN for a single trial)."""
    lines = []
    for trial in trials:
        final = trial["final"] if isinstance(trial["final"], dict) else {}
        params = trial["parameters"] or {}
        lines.append({
            "trial": trial["trial"], "status": trial["status"],
            "strategy": final.get("strategy", params.get("strategy")),
            "bits": final.get("bits", params.get("bits", params.get("code_bits"))),
            "seed": final.get("seed", params.get("seed")),
            "test_mAP@100": final.get("default"), "val_mAP@100": final.get("val_mAP"),
            "search_s": final.get("search_s"), "params": final.get("params"), "arch": final.get("arch"),
        })
    table = pd.DataFrame(lines, columns=["trial", "status", "strategy", "bits", "seed", "test_mAP@100",
                                         "val_mAP@100", "search_s", "params", "arch"])
    done = table.dropna(subset=["test_mAP@100"])
    summary = (done.groupby(["strategy", "bits"], sort=True)
               .agg(test_mAP_mean=("test_mAP@100", "mean"), test_mAP_std=("test_mAP@100", "std"),
                    test_mAP_ci95=("test_mAP@100", lambda v: mean_ci95(v.to_numpy())[1]),
                    trials=("test_mAP@100", "size"), search_s_mean=("search_s", "mean"))
               .reset_index())
    return table, summary


def write_comparison(table: pd.DataFrame, summary: pd.DataFrame, out: Path, title: str) -> list[Path]:
    """``trials.csv``, ``summary.csv``, ``summary.md`` and ``comparison.png`` (mAP per strategy and bits)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "trials.csv", index=False, float_format="%.4f")
    summary.to_csv(out / "summary.csv", index=False, float_format="%.4f")
    (out / "summary.md").write_text(f"# {title}\n\n" + summary.to_markdown(index=False, floatfmt=".4f") + "\n")
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    if not summary.empty:
        bits = sorted(summary["bits"].unique())
        strategies = list(dict.fromkeys(summary["strategy"]))
        width = 0.8 / len(bits)
        for i, b in enumerate(bits):
            part = summary[summary["bits"] == b].set_index("strategy").reindex(strategies)
            xs = [j + i * width for j in range(len(strategies))]
            left.bar(xs, part["test_mAP_mean"], width, yerr=part["test_mAP_ci95"].fillna(0), label=f"{b} bits")
            right.bar(xs, part["search_s_mean"], width, label=f"{b} bits")
        for ax, ylabel in ((left, "test mAP@100"), (right, "search seconds")):
            ax.set_xticks([j + width * (len(bits) - 1) / 2 for j in range(len(strategies))], strategies)
            ax.set_ylabel(ylabel + (" (error bars: 95 % CI over seeds)" if ax is left else ""))
            ax.grid(axis="y", alpha=0.3)
            ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out / "comparison.png", dpi=110)
    plt.close(fig)
    return [out / name for name in ("trials.csv", "summary.csv", "summary.md", "comparison.png")]
