"""The paper's Table 2 and Table 3, and Figures 5–7, on any dataset config (default: the embedded one).

Every row of :mod:`benchmarks.rows` runs once per code length and seed through the same pipeline as
``avnas search`` / ``avnas train``; each run is a run directory under ``--work``, so an interrupted
benchmark resumes where it stopped (finished rows are read back, a half-done run continues from its
last epoch) and ``--rows`` reruns a subset::

    python -m benchmarks.table2 --profile quick --out benchmarks/results/table2
    avnas bench table2 --rows "AV-NAS (Arch-1),DARTS" --bits 64 --seeds 3

Writes ``table2.csv`` (one line per run), ``table2.md`` (both tables with the paper's numbers beside
ours, the claims checked, the paired test, machine and command) and the figures of
:mod:`benchmarks.figures`.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import shlex
import sys
import time
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from tqdm import tqdm

from avnas_nni.console import quiet_libraries
from avnas_nni.data import embedded_config
from avnas_nni.errors import AVNASError
from avnas_nni.methods import METHODS
from avnas_nni.metrics import average_precision_at_k
from avnas_nni.pipeline import (
    PROFILES,
    RunSettings,
    check_settings,
    run_method,
    run_search,
    run_train,
    shares_search,
)
from avnas_nni.runs import read_json
from avnas_nni.threads import apply_thread_policy
from benchmarks._common import machine, run_codes
from benchmarks.rows import PAPER_DATASETS, ROWS, Row, select_rows

__all__ = ["BENCH_PROFILES", "main", "run_row", "run_table", "query_ap", "write_report"]

logger = logging.getLogger(__name__)

#: Benchmark profiles. ``quick``: the embedded data on 2 CPU cores, 2 supernet + 3 fine-tune epochs per row, within
#: the 45-minute budget for all 25 rows (measured time: README and ``table2.md``). History: 2 + 6 epochs took 62.6 min
#: for 20 rows; in those runs' histories, val mAP after 3 fine-tune epochs already kept the paper's orderings (AV-NAS
#: 0.65-0.70 above every NAS baseline, audio-visual > visual > audio), so the quick table trades ~0.1 mAP of
#: convergence for half the training time; ``--finetune-epochs 6`` gives the longer table. ``paper``: SPEC §4
#: (300 + 300 epochs, batch 128).
BENCH_PROFILES: dict[str, dict[str, Any]] = {
    "quick": {**PROFILES["quick"], "search_epochs": 2, "finetune_epochs": 3},
    "paper": dict(PROFILES["paper"]),
}

_COLUMNS = ["row", "table", "group", "bits", "seed", "test_mAP@100", "val_mAP@100", "supernet_s_per_epoch",
            "search_s", "train_s_per_epoch", "infer_s_per_12.5k", "params", "run"]


def _settings(row: Row, bits: int, seed: int, base: dict[str, Any]) -> RunSettings:
    """The row's run settings. ``base["profile"]`` (set by :func:`main`) names the bench profile: under ``paper`` a
    method row takes its own paper's settings (:attr:`~avnas_nni.methods.HashingMethod.paper_settings`) wherever
    ``base`` still holds the profile's value (a command-line flag that changed it wins)."""
    base = dict(base)
    profile = base.pop("profile", None)
    values = {**base, **row.settings, **(row.quick if profile == "quick" else {}), "bits": bits,
              "seed": seed + row.seed_offset}
    values.setdefault("strategy", "fixed")
    if row.command in ("train", "method"):
        values["strategy"] = "fixed"
    if row.command == "method" and profile == "paper":
        for key, value in METHODS[row.settings["method"]].paper_settings.items():
            if key not in row.settings and base.get(key) == BENCH_PROFILES["paper"].get(key):
                values[key] = value
    return RunSettings(**values)


def _run_dir(work: Path, row: Row, bits: int, seed: int) -> Path:
    return work / f"{row.slug}-{bits}b-s{seed}"


def run_row(row: Row, bits: int, seed: int, base: dict[str, Any], work: Path, progress: bool = False,
            also_prune: tuple[str, ...] = ()) -> dict:
    """Run (or read back, or resume) one row at one code length and seed; return its CSV record.

    ``also_prune``: pruning rules of rows sharing this row's search (saved with it). A row with
    ``share_search_with`` reuses that row's finished search when it saved this row's rule, else searches itself.
    """
    settings = _settings(row, bits, seed, base)
    out = _run_dir(work, row, bits, seed)
    cached = (out / "metrics.json").is_file()
    if cached:
        # a cached result counts only for the very same settings (another profile or epoch count: another --work)
        check_settings(out, settings, "reusing a finished run (choose another --work to rerun)")
        metrics = read_json(out / "metrics.json", "metrics")
    else:
        resume = (out / "settings.json").is_file()
        if resume:
            logger.info("%s, %d bits, seed %d: resuming %s", row.name, bits, seed, out)
        command = {"search": run_search, "train": run_train, "method": run_method}[row.command]
        extra: dict[str, Any] = {"also_prune": also_prune} if also_prune else {}
        if row.share_search_with is not None:
            source = _run_dir(work, ROWS[row.share_search_with], bits, seed)
            if shares_search(settings, source):
                extra["search_from"] = source
                logger.info("%s, %d bits, seed %d: reusing the search of %s", row.name, bits, seed, source)
        metrics = command(settings, out, resume=resume, progress=progress, **extra)
    return {
        "row": row.name, "table": row.table, "group": row.group, "bits": bits, "seed": seed,
        "test_mAP@100": metrics["test_mAP@100"], "val_mAP@100": metrics["val_mAP@100"],
        # Random search trains no supernet (its "epochs" average to 0): no entry rather than 0 s.
        "supernet_s_per_epoch": metrics.get("supernet_seconds_per_epoch") or None,
        "search_s": metrics.get("search_seconds"),
        "train_s_per_epoch": metrics.get("finetune_seconds_per_epoch", metrics.get("train_seconds_per_epoch")),
        "infer_s_per_12.5k": metrics["infer_seconds_per_12.5k"], "params": metrics["params"], "run": str(out),
        "cached": cached,
    }


def _cost(job: tuple[Row, int, int]) -> tuple[int, int]:
    """Longest first (a search before a fixed net, DARTS's two-level search before the rest): fewer idle workers
    at the end of a parallel table."""
    row = job[0]
    return (row.command != "search", row.settings.get("strategy") != "darts")


def _init_worker(threads: int) -> None:
    apply_thread_policy(threads)
    quiet_libraries()
    logging.basicConfig(level=logging.INFO, format="%(message)s")


def run_table(rows: list[Row], bits: list[int], seeds: list[int], base: dict[str, Any], work: Path,
              progress: bool = False, jobs: int = 1, threads: int | None = None) -> pd.DataFrame:
    """Every (row, bits, seed) run, with a progress bar over runs; records in (bits, row, seed) order.

    ``jobs > 1`` runs that many at a time in worker processes with ``threads`` torch threads each (small
    networks use a second thread poorly, so on a CPU parallel runs finish the table sooner). A row that shares
    another selected row's search (:attr:`Row.share_search_with`) starts once that run has finished. A failed
    run stops the table; finished runs stay cached in ``work``.
    """
    ordered = [(row, b, s) for b in bits for row in rows for s in seeds]
    names = {row.name for row in rows}
    # source row → pruning rules of the selected rows that reuse its search
    also: dict[str, tuple[str, ...]] = {}
    for row in rows:
        if row.share_search_with in names:
            rule = row.settings.get("prune", RunSettings.prune)
            also[row.share_search_with] = (*also.get(row.share_search_with, ()), rule)
    position = {(row.name, b, s): i for i, (row, b, s) in enumerate(ordered)}
    waits_for = {i: position[(row.share_search_with, b, s)] for i, (row, b, s) in enumerate(ordered)
                 if row.share_search_with in names}
    records: dict[int, dict] = {}
    with tqdm(total=len(ordered), desc="table2", unit="run", disable=None) as bar:
        def done(index: int, record: dict) -> None:
            records[index] = record
            bar.update()
            logger.info("%s, %d bits, seed %d: test mAP@100 %.4f", record["row"], record["bits"], record["seed"],
                        record["test_mAP@100"])

        def args(index: int) -> tuple:
            row, b, s = ordered[index]
            return row, b, s, base, work, progress, also.get(row.name, ())

        if jobs <= 1:  # registry order: a shared search's source row comes before the rows reusing it
            for index in sorted(range(len(ordered)), key=lambda i: (i in waits_for, i)):
                row, b, s = ordered[index]
                bar.set_postfix_str(f"{row.name}, {b} bits, seed {s}")
                done(index, run_row(*args(index)))
        else:
            context = multiprocessing.get_context("spawn")  # fork after torch's thread pools start can hang
            with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker,
                                     initargs=(threads or 1,)) as pool:
                pending = {pool.submit(run_row, *args(i)): i
                           for i in sorted(range(len(ordered)), key=lambda i: _cost(ordered[i])) if i not in waits_for}
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_EXCEPTION)
                    for future in finished:
                        index = pending.pop(future)
                        if future.exception() is not None:
                            for other in pending:
                                other.cancel()
                            raise future.exception()
                        done(index, future.result())
                        for waiting in [i for i, source in waits_for.items() if source == index]:
                            pending[pool.submit(run_row, *args(waiting))] = waiting
    return pd.DataFrame.from_records([records[i] for i in range(len(ordered))], columns=[*_COLUMNS, "cached"])


def query_ap(run: str | Path, split: str = "test") -> np.ndarray:
    """AP@100 of every ``split`` query of a finished run (cached as ``{split}_ap.npy`` in the run)."""
    cache = Path(run) / f"{split}_ap.npy"
    if cache.is_file():
        return np.load(cache, allow_pickle=False)
    query, labels, database, db_labels = run_codes(run, split)
    ap = average_precision_at_k(query, database, labels, db_labels, topk=100)
    np.save(cache, ap)
    return ap


def _cell(values: pd.Series, digits: int = 4) -> str:
    values = values.dropna()
    if values.empty:
        return "–"
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def _paper(row: Row, bits: list[int]) -> list[str]:
    cells = []
    for index in range(len(PAPER_DATASETS)):
        numbers = [row.paper.get(b, (None, None))[index] for b in bits]
        cells.append(" / ".join("–" if n is None else f"{n:.4f}" for n in numbers))
    return cells


def _table_markdown(results: pd.DataFrame, table: str, bits: list[int]) -> str:
    timing_bits = 64 if 64 in bits else max(bits)
    header = ([f"mAP@100 {b} bits" for b in bits]
              + [f"paper {name} ({'/'.join(map(str, bits))})" for name in PAPER_DATASETS]
              + [f"SuperNet s/epoch ({timing_bits})", "Search s", "Train s/epoch", "Infer s/12.5k",
                 f"#Params ({timing_bits})"])
    lines = ["| Method | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    for name in dict.fromkeys(results.loc[results["table"] == table, "row"]):
        row, runs = ROWS[name], results[results["row"] == name]
        at = runs[runs["bits"] == timing_bits]
        cells = [_cell(runs.loc[runs["bits"] == b, "test_mAP@100"]) for b in bits] + _paper(row, bits)
        cells += [_cell(at["supernet_s_per_epoch"], 1), _cell(at["search_s"], 1), _cell(at["train_s_per_epoch"], 1),
                  _cell(at["infer_s_per_12.5k"], 2), f"{int(at['params'].iloc[0]):,}" if len(at) else "–"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _mean_map(results: pd.DataFrame, name: str, bits: int) -> float | None:
    values = results.loc[(results["row"] == name) & (results["bits"] == bits), "test_mAP@100"]
    return float(values.mean()) if len(values) else None


def claims(results: pd.DataFrame, bits: list[int]) -> list[str]:
    """The paper's claims, checked on these results: one line each, saying whether and by how much."""
    lines = []
    avnas = "AV-NAS (Arch-1)"
    nas = [name for name in dict.fromkeys(results["row"]) if ROWS[name].group == "nas"]
    hashing = [name for name in dict.fromkeys(results["row"]) if ROWS[name].group == "expert-hashing"]
    for b in bits:
        ours = _mean_map(results, avnas, b)
        if ours is None:
            continue
        for names, what, short in ((nas, "NAS baseline", "baseline"),
                                   (hashing, "expert-designed video-hashing method", "method")):
            if not names:
                continue
            best = max(names, key=lambda name: _mean_map(results, name, b) or -1.0)
            margin = ours - (_mean_map(results, best, b) or 0.0)
            verdict = "holds" if margin >= 0 else "does NOT hold"
            lines.append(f"- AV-NAS ≥ every {what} ({b} bits): {verdict} — AV-NAS {ours:.4f} vs best "
                         f"{short} {best} {ours - margin:.4f} ({margin:+.4f}).")
        visual, audio = _mean_map(results, "Visual only", b), _mean_map(results, "Audio only", b)
        if visual is not None and audio is not None:
            verdict = "holds" if ours > visual > audio else "does NOT hold"
            lines.append(f"- audio-visual > visual-only > audio-only ({b} bits): {verdict} — {ours:.4f} / "
                         f"{visual:.4f} / {audio:.4f} (AV − V {ours - visual:+.4f}, V − A {visual - audio:+.4f}).")
    timing_bits = 64 if 64 in bits else max(bits)
    epochs = {name: results.loc[(results["row"] == name) & (results["bits"] == timing_bits), "supernet_s_per_epoch"]
              for name in (avnas, "DARTS")}
    if all(len(v.dropna()) for v in epochs.values()):
        ratio = epochs[avnas].mean() / epochs["DARTS"].mean()
        verdict = "holds" if ratio < 1 else "does NOT hold"
        lines.append(f"- one-level supernet epoch < DARTS's ({timing_bits} bits): {verdict} — "
                     f"{epochs[avnas].mean():.1f} s vs {epochs['DARTS'].mean():.1f} s = {ratio:.2f}× "
                     "(paper: 0.48×, 66 s vs 137 s on a V100).")
    return lines


def _seed_mean_ap(results: pd.DataFrame, name: str, bits: int) -> np.ndarray:
    runs = results.loc[(results["row"] == name) & (results["bits"] == bits), "run"]
    return np.mean([query_ap(run) for run in runs], axis=0)


def paired_tests(results: pd.DataFrame, bits: list[int]) -> list[str]:
    """Wilcoxon signed-rank test of per-query AP@100 (averaged over seeds): AV-NAS vs the best other row, and vs
    AVHash (the paper's test: p < 0.05 vs AVHash) when AVHash ran and is not that row."""
    lines, avnas = [], "AV-NAS (Arch-1)"
    others = [name for name in dict.fromkeys(results.loc[results["table"] == "2", "row"]) if ROWS[name].group
              != "avnas"]
    for b in bits:
        if _mean_map(results, avnas, b) is None or not others:
            continue
        best = max(others, key=lambda name: _mean_map(results, name, b) or -1.0)
        for other in dict.fromkeys([best] + (["AVHash"] if "AVHash" in others else [])):
            ours, theirs = _seed_mean_ap(results, avnas, b), _seed_mean_ap(results, other, b)
            difference = ours - theirs
            if not np.any(difference):
                lines.append(f"- {b} bits: AV-NAS and {other} give identical per-query AP; no test.")
                continue
            test = stats.wilcoxon(ours, theirs, alternative="two-sided")
            lines.append(f"- {b} bits: AV-NAS vs {other}: mean per-query ΔAP {difference.mean():+.4f} over "
                         f"{len(difference)} test queries, Wilcoxon signed-rank p = {test.pvalue:.3g} (two-sided).")
    return lines


def write_report(results: pd.DataFrame, out: Path, bits: list[int], command: str, notes: str = "") -> str:
    """Write ``table2.csv`` and ``table2.md`` under ``out``; return the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    results.drop(columns=["run"]).to_csv(out / "table2.csv", index=False, float_format="%.4f")
    seeds = sorted(results["seed"].unique())
    parts = [
        "# AV-NAS Table 2 and Table 3, reproduced", "",
        f"Command: `{command}`  ", f"Machine: {machine()}  ",
        f"Seeds: {', '.join(map(str, seeds))} (cells are mean ± std over seeds when there are several)  ",
        "mAP@100 on the test queries against the retrieval set; times at the larger code length. "
        "Paper columns: SPEC §6 (V100 GPU, real CLIP/AST features) — shape to compare, not numbers to match. "
        "The paper gives Random 1–5 only as a range (ActivityNet 0.7447–0.8649, FCVID 0.8071–0.8880).",
    ]
    if notes:
        parts += ["", notes]
    parts += ["", "## Table 2", "", _table_markdown(results, "2", bits)]
    if (results["table"] == "3").any():
        parts += ["", "## Table 3 (expert networks)", "", _table_markdown(results, "3", bits)]
    checked = claims(results, bits)
    if checked:
        parts += ["", "## The paper's claims on this data", "", *checked]
    tests = paired_tests(results, bits)
    if tests:
        parts += ["", "## Paired test", "", *tests]
    text = "\n".join(parts) + "\n"
    (out / "table2.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="avnas bench table2", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="embedded", help="dataset JSON config, or 'embedded' (default)")
    parser.add_argument("--profile", default="quick", choices=sorted(BENCH_PROFILES))
    parser.add_argument("--rows", help=f"comma-separated rows (default: all): {', '.join(ROWS)}")
    parser.add_argument("--bits", default="32,64", help="code lengths (default 32,64)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per cell: seed, seed+1, … (default 1)")
    parser.add_argument("--seed", type=int, default=3346)
    parser.add_argument("--epochs", type=int, help="supernet epochs (default: the profile's)")
    parser.add_argument("--finetune-epochs", type=int, help="fine-tune / training epochs (default: the profile's)")
    parser.add_argument("--batch-size", type=int, help="triplets per batch (default: the profile's)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--jobs", type=int, help="runs at a time (default: one per CPU core on cpu, 1 on cuda)")
    parser.add_argument("--threads", type=int, help="torch threads per run (default: cores / jobs)")
    parser.add_argument("--work", type=Path, help="run directories (default runs/table2/<data>-<profile>)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/table2"))
    parser.add_argument("--no-figures", action="store_true", help="tables only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        bits = sorted({int(b) for b in args.bits.split(",")})
        rows = select_rows(args.rows)
        if args.seeds < 1:
            raise ValueError(f"--seeds: expected a positive integer, got {args.seeds}")
        cores = os.cpu_count() or 1
        jobs = args.jobs if args.jobs is not None else (cores if args.device == "cpu" else 1)
        if jobs < 1 or (args.threads is not None and args.threads < 1):
            raise ValueError(f"--jobs/--threads: expected positive integers, got {args.jobs}/{args.threads}")
        threads = args.threads or max(1, cores // jobs)
        apply_thread_policy(threads)  # this process's own work (codes for the figures) and the machine line
        base = {**BENCH_PROFILES[args.profile], "data": args.data, "device": args.device, "profile": args.profile}
        for name, value in (("search_epochs", args.epochs), ("finetune_epochs", args.finetune_epochs),
                            ("batch_size", args.batch_size)):
            if value is not None:
                base[name] = value
        _settings(rows[0], bits[0], args.seed, base)  # bad settings fail before any run starts
        data_name = "embedded" if args.data == "embedded" else Path(args.data).stem
        work = args.work or Path("runs") / "table2" / f"{data_name}-{args.profile}"
        seeds = [args.seed + i for i in range(args.seeds)]
        if args.data == "embedded":
            embedded_config()  # generate the cached set once, before parallel runs would all race to
        started = time.perf_counter()
        results = run_table(rows, bits, seeds, base, work, jobs=jobs, threads=threads)
        minutes = (time.perf_counter() - started) / 60
        computed = int((~results.pop("cached")).sum())
        command = "python -m benchmarks.table2 " + shlex.join(argv if argv is not None else sys.argv[1:])
        notes = (f"Profile `{args.profile}`: " + ", ".join(f"{k} {base[k]}" for k in sorted(BENCH_PROFILES[
            args.profile])) + f"; data `{args.data}`; {jobs} run(s) at a time, {threads} torch thread(s) each "
            f"(times are per run, measured side by side). This invocation: {computed} of {len(results)} runs "
            f"computed, the rest read back from `{work}`, in {minutes:.1f} min.")
        own = [f"{row.name} {row.quick}" for row in rows if row.quick and args.profile == "quick"]
        if own:
            notes += " Rows with quick-profile settings of their own: " + "; ".join(own) + "."
        print(write_report(results, args.out, bits, command.strip(), notes))
        if not args.no_figures:
            from benchmarks.figures import write_figures
            for path in write_figures(results, args.out, bits):
                print(f"wrote {path}")
    except (AVNASError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
