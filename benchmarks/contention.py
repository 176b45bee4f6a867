"""Contention benchmark: the main job's supernet and fine-tune epochs alone, beside an identical run, and beside a
CPU-bound non-torch neighbour (a busy loop on one core).

Run ``python -m benchmarks.contention --out benchmarks/results/contention`` (about 10–15 min on 2 idle cores with
the defaults). Each scenario runs ``avnas search``'s pipeline (``run_search``: one-level AV-NAS, embedded data,
batch 32, 64 bits, the package's thread policy) in fresh processes, with a fixed number of training steps per
epoch (``--steps``, Lightning's ``limit_train_batches``; each epoch's full validation is included) so that the
time is bounded; the seconds per epoch come from each run's ``history.csv``. Scenarios:

* ``alone``: one run;
* ``beside an identical run``: two identical runs started together (the slower one is reported);
* ``beside a busy loop``: one run while ``python -c 'while True: pass'`` keeps one core busy.

Goal of issue 14: both contended scenarios ≤ 2.5× ``alone``, per stage. Writes ``contention.md`` (table, commit,
machine, command) and ``contention.json`` into ``--out``. A scenario that exceeds ``--timeout`` is stopped and
reported as such. Not a timed test: the numbers mean something only on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "run_scenarios", "GOAL"]

logger = logging.getLogger(__name__)

#: Issue 14's bound: a contended epoch at most this many times the alone epoch.
GOAL = 2.5

SCENARIOS = ("alone", "beside an identical run", "beside a busy loop")
STAGES = ("search", "finetune")


def _worker(args: argparse.Namespace) -> int:
    """One run of the main job's pipeline into ``--run-dir`` (a child process of :func:`run_scenarios`)."""
    from avnas_nni.console import quiet_libraries

    quiet_libraries()
    from avnas_nni.pipeline import RunSettings, run_search
    from avnas_nni.threads import apply_thread_policy, batch_work

    extra = {"trainer": {"limit_train_batches": args.steps}} if args.steps else {}
    settings = RunSettings.resolve("quick", strategy=args.strategy, data=args.data, bits=args.bits,
                                   search_epochs=args.search_epochs, finetune_epochs=args.finetune_epochs,
                                   batch_size=args.batch_size, extra=extra)
    plan = apply_thread_policy(args.threads, batch_work(settings.data, settings.batch_size, settings.n_neg))
    run_search(settings, args.run_dir)
    (Path(args.run_dir) / "threads.json").write_text(json.dumps(plan.__dict__) + "\n")
    return 0


def _epoch_seconds(run_dir: Path) -> dict[str, float]:
    """Median seconds per epoch of each stage, from a finished run's ``history.csv``."""
    import pandas as pd

    from avnas_nni.runs import RunDir

    history = pd.read_csv(RunDir(run_dir).history_path)
    return {stage: float(statistics.median(history.loc[history["stage"] == stage, "seconds"]))
            for stage in STAGES if (history["stage"] == stage).any()}


def _worker_command(args: argparse.Namespace, run_dir: Path) -> list[str]:
    command = [sys.executable, "-m", "benchmarks.contention", "--worker", "--run-dir", str(run_dir),
               "--data", args.data, "--bits", str(args.bits), "--strategy", args.strategy,
               "--search-epochs", str(args.search_epochs), "--finetune-epochs", str(args.finetune_epochs),
               "--batch-size", str(args.batch_size), "--steps", str(args.steps)]
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    return command


def _scenario(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Run one scenario; seconds per epoch per stage (the slowest run's), wall seconds, or a timeout note."""
    runs = 2 if name == "beside an identical run" else 1
    dirs = [work / f"{name.replace(' ', '-')}-{i}" for i in range(runs)]
    neighbour = None
    if name == "beside a busy loop":
        neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    started = time.perf_counter()
    logs = [open(d.with_suffix(".log"), "w") for d in dirs]  # noqa: SIM115 - closed below
    children = [subprocess.Popen(_worker_command(args, d), stdout=log, stderr=subprocess.STDOUT)
                for d, log in zip(dirs, logs, strict=True)]
    timed_out = False
    try:
        for child in children:
            remaining = max(1.0, args.timeout - (time.perf_counter() - started))
            try:
                child.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                timed_out = True
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
        for log in logs:
            log.close()
    wall = time.perf_counter() - started
    row: dict[str, Any] = {"scenario": name, "runs": runs, "wall_seconds": round(wall, 1)}
    if timed_out:
        row["error"] = f"stopped after {args.timeout:.0f} s (--timeout)"
        return row
    failed = [d for d, child in zip(dirs, children, strict=True) if child.returncode != 0]
    if failed:
        tail = failed[0].with_suffix(".log").read_text()[-2000:]
        raise RuntimeError(f"contention: the run in {failed[0]} failed:\n{tail}")
    per_run = [_epoch_seconds(d) for d in dirs]
    for stage in STAGES:
        values = [r[stage] for r in per_run if stage in r]
        if values:
            row[stage] = round(max(values), 2)
            row[f"{stage}_each"] = [round(v, 2) for v in values]
    threads = dirs[0] / "threads.json"
    if threads.is_file():
        row["threads"] = json.loads(threads.read_text())
    return row


def run_scenarios(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    """Every scenario of ``args.scenarios`` in order, with ratios to ``alone``."""
    rows = []
    for name in args.scenarios:
        logger.info("contention: %s …", name)
        rows.append(_scenario(name, args, work))
        logger.info("contention: %s", rows[-1])
    alone = next((r for r in rows if r["scenario"] == "alone"), None)
    for row in rows:
        for stage in STAGES:
            if alone and stage in row and alone.get(stage):
                row[f"{stage}_ratio"] = round(row[stage] / alone[stage], 2)
    return rows


def _commit() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" (with uncommitted changes)" if dirty else "")


def _machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            model = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import torch

    from avnas_nni.threads import available_cores

    return (f"{model}, nproc {os.cpu_count()}, {available_cores()} cores available to this process, torch "
            f"{torch.__version__}, Python {platform.python_version()}, {platform.system()} {platform.release()}")


def _cell(row: dict[str, Any], stage: str) -> str:
    if "error" in row:
        return row["error"]
    if stage not in row:
        return "–"
    ratio = row.get(f"{stage}_ratio")
    mark = "" if ratio is None or row["scenario"] == "alone" else (" ✓" if ratio <= GOAL else " ✗")
    each = row.get(f"{stage}_each", [])
    runs = f" (runs: {', '.join(f'{v:.1f}' for v in each)})" if len(each) > 1 else ""
    return f"{row[stage]:.1f} s" + (f" = {ratio:.2f}×{mark}" if ratio is not None else "") + runs


def write_report(rows: list[dict[str, Any]], args: argparse.Namespace, argv: Sequence[str], out: Path,
                 load_before: tuple[float, float, float]) -> Path:
    """``contention.md`` and ``contention.json`` in ``out``; returns the markdown path."""
    out.mkdir(parents=True, exist_ok=True)
    steps = f"{args.steps} training steps per epoch" if args.steps else "full epochs"
    threads = rows[0].get("threads", {}) if rows else {}
    lines = [
        "# Contention benchmark (issue 14)", "",
        f"Commit {_commit()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.  ",
        f"Machine: {_machine()}; load average before the first scenario {load_before[0]:.2f} / "
        f"{load_before[1]:.2f} / {load_before[2]:.2f}.  ",
        f"Command: `python -m benchmarks.contention {shlex.join(argv)}`.  ",
        f"Work per run: `{args.strategy}` search on `{args.data}` at {args.bits} bits, batch {args.batch_size}, "
        f"{args.search_epochs} supernet + {args.finetune_epochs} fine-tune epochs of {steps} (each epoch's "
        f"validation included); threads per run: {threads.get('intra_op', '?')} intra-op, OMP_WAIT_POLICY="
        f"{threads.get('wait_policy', '?')} ({threads.get('reason', '?')}).  ",
        f"Seconds per epoch = median over a run's epochs of that stage; with two runs, the slower one. Goal: "
        f"contended ≤ {GOAL}× alone.", "",
        "| scenario | supernet epoch | fine-tune epoch | wall (s) |", "|---|---|---|---|",
    ]
    for row in rows:
        lines.append(f"| {row['scenario']} | {_cell(row, 'search')} | {_cell(row, 'finetune')} | "
                     f"{row['wall_seconds']:.0f} |")
    markdown = out / "contention.md"
    markdown.write_text("\n".join(lines) + "\n")
    (out / "contention.json").write_text(json.dumps({"argv": list(argv), "rows": rows}, indent=2) + "\n")
    return markdown


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.contention", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/contention"),
                        help="directory for contention.md / contention.json")
    parser.add_argument("--data", default="embedded")
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--strategy", default="avnas")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--search-epochs", type=int, default=2)
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20,
                        help="training steps per epoch (0: full epochs; the embedded data has 47 at batch 32)")
    parser.add_argument("--threads", type=int, help="torch threads per run (default: the package's policy)")
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS, metavar="SCENARIO",
                        help=f"subset of {SCENARIOS} ('alone' first for ratios)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before a scenario is stopped")
    parser.add_argument("--work", type=Path, help="directory for the runs (default: a temporary one)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", type=Path, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.worker:
        return _worker(args)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    load_before = os.getloadavg()
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
        rows = run_scenarios(args, args.work)
    else:
        with tempfile.TemporaryDirectory(prefix="avnas-contention-") as tmp:
            rows = run_scenarios(args, Path(tmp))
    markdown = write_report(rows, args, argv, args.out, load_before)
    print(markdown.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
