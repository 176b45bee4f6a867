"""The paper's Table 2 and Table 3, and Figures 5–7, on any dataset config (default: the embedded one).

Every row of :mod:`benchmarks.rows` runs once per code length and seed through the same pipeline as
``avnas search`` / ``avnas train``; each run is a run directory under ``--work``, so an interrupted
benchmark resumes where it stopped (finished rows are read back, a half-done run continues from its
last epoch) and ``--rows`` reruns a subset::

    python -m benchmarks.table2 --profile bench-quick --out benchmarks/results/table2
    avnas bench table2 --rows "AV-NAS (Arch-1),DARTS" --bits 64 --seeds 3
    avnas bench table2 --bits 32,64 --seeds 32:3,64:1     # 3 seeds at 32 bits, 1 at 64

Writes ``table2.csv`` (one line per run), ``table2.md`` (both tables with the paper's numbers beside
ours, the claims checked, the paired test, machine and command) and the figures of
:mod:`benchmarks.figures`.
"""

from __future__ import annotations

import argparse
import json
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
from avnas_nni.data import EMBEDDED_SETS, embedded_config
from avnas_nni.errors import AVNASError, SettingsError
from avnas_nni.methods import METHODS
from avnas_nni.metrics import average_precision_at_k, mean_ci95
from avnas_nni.pipeline import (
    PROFILES,
    RunSettings,
    reusable_run,
    run_method,
    run_search,
    run_train,
    shares_search,
)
from avnas_nni.runs import RunDir, atomic_write_text
from avnas_nni.threads import apply_thread_policy
from benchmarks._common import commit, machine, run_codes
from benchmarks.rows import PAPER_DATASETS, ROWS, SELF_FUSION, Row, select_rows
from search_spaces import single_modality

__all__ = ["BENCH_PROFILES", "main", "run_row", "run_table", "query_ap", "write_report"]

logger = logging.getLogger(__name__)

#: Benchmark profiles (named entries of :data:`avnas_nni.pipeline.PROFILES`). ``bench-quick``: the embedded data on
#: 2 CPU cores, 2 supernet + 3 fine-tune epochs per row (the 28 rows took ≈ 75 min at 32 bits × 3 seeds and ≈ 25 min
#: at 64 bits × 1 seed, two runs at a time: docs/results.md). ``paper``:
#: SPEC §4 (300 + 300 epochs, batch 128).
BENCH_PROFILES: dict[str, dict[str, Any]] = {name: dict(PROFILES[name]) for name in ("bench-quick", "paper")}

_COLUMNS = ["row", "dataset", "table", "group", "bits", "seed", "test_mAP@100", "val_mAP@100",
            "supernet_s_per_epoch", "search_s", "search_wall_s", "train_s_per_epoch", "train_epochs",
            "infer_s_per_12.5k", "params", "changed_cells", "cells", "run"]


def _from_scratch(row: Row) -> bool:
    """Rows whose network starts from fresh weights (no supernet to inherit W* from)."""
    return row.command in ("train", "method", "derive") or row.settings.get("strategy") == "random"


def _settings(row: Row, bits: int, seed: int, base: dict[str, Any], work: Path | None = None) -> RunSettings:
    """The row's run settings. ``base["profile"]`` (set by :func:`main`) names the bench profile: under ``paper`` a
    method row takes its own paper's settings (:attr:`~avnas_nni.methods.HashingMethod.paper_settings`) wherever
    ``base`` still holds the profile's value (a command-line flag that changed it wins).

    Equal budgets: a row trained from scratch (:func:`_from_scratch`) trains for the supernet epochs plus the
    fine-tune epochs, the weight-update epochs a searched row gets. Dataset-B rows read ``base["data_b"]``; a derive
    row's architecture file lies under ``work``.
    """
    base = dict(base)
    profile = base.pop("profile", None)
    data_b = base.pop("data_b", None)
    values = {**base, **row.settings, **(row.quick if profile == "bench-quick" else {}), "bits": bits,
              "seed": seed + row.seed_offset}
    if row.dataset == "B":
        if not data_b:
            raise SettingsError(f"row {row.name!r} runs on a second dataset: give --data-b")
        values["data"] = data_b
    values.setdefault("strategy", "fixed")
    if _from_scratch(row):
        values["finetune_epochs"] = values["finetune_epochs"] + values["search_epochs"]
    if row.command in ("train", "method", "derive"):
        values["strategy"] = "fixed"
    if row.command == "derive":
        values["arch"] = str(_derived_arch_path(work or Path("."), row, bits, seed))
    if row.command == "method" and profile == "paper":
        for key, value in METHODS[row.settings["method"]].paper_settings.items():
            if key not in row.settings and base.get(key) == BENCH_PROFILES["paper"].get(key):
                values[key] = value
    return RunSettings.resolve(profile or "bench-quick", **values)


def _run_dir(work: Path, row: Row, bits: int, seed: int) -> Path:
    return work / f"{row.slug}-{bits}b-s{seed}"


def _derived_arch_path(work: Path, row: Row, bits: int, seed: int) -> Path:
    return work / "derived" / f"{row.slug}-{bits}b-s{seed}.arch.json"


def _derive(row: Row, bits: int, seed: int, work: Path) -> Path:
    """Write a derive row's architecture (from its source row's finished run) where its settings point."""
    source = _run_dir(work, ROWS[row.derive_from], bits, seed)
    record = RunDir(source).read_arch()
    sample, space = dict(record["arch"]), dict(record.get("space", {}))
    if row.derive in ("visual", "audio"):
        sample = single_modality(sample, row.derive, SELF_FUSION)
        space["modalities"] = [row.derive]
    path = _derived_arch_path(work, row, bits, seed)
    atomic_write_text(path, json.dumps({"space": space, "arch": sample, "derived_from": str(source),
                                        "derive": row.derive}, indent=2) + "\n")
    return path


def run_row(row: Row, bits: int, seed: int, base: dict[str, Any], work: Path, progress: bool = False,
            also_prune: tuple[str, ...] = ()) -> dict:
    """Run (or read back, or resume) one row at one code length and seed; return its CSV record.

    ``also_prune``: pruning rules of rows sharing this row's search (saved with it). A row with
    ``share_search_with`` reuses that row's finished search when it saved this row's rule, else searches itself.
    """
    settings = _settings(row, bits, seed, base, work)
    out = _run_dir(work, row, bits, seed)
    run_dir = RunDir(out)
    # a cached result counts only for the very same settings (another profile or epoch count: another --work)
    metrics, resume = reusable_run(out, settings, "reusing a finished run (choose another --work to rerun)")
    cached = metrics is not None
    if not cached:
        if resume:
            logger.info("%s, %d bits, seed %d: resuming %s", row.name, bits, seed, out)
        if row.command == "derive":
            _derive(row, bits, seed, work)
        command = {"search": run_search, "train": run_train, "method": run_method, "derive": run_train}[row.command]
        extra: dict[str, Any] = {"also_prune": also_prune} if also_prune else {}
        if row.share_search_with is not None:
            source = _run_dir(work, ROWS[row.share_search_with], bits, seed)
            if shares_search(settings, source):
                extra["search_from"] = source
                logger.info("%s, %d bits, seed %d: reusing the search of %s", row.name, bits, seed, source)
        metrics = command(settings, out, resume=resume, progress=progress, **extra)
    supernet = metrics.get("supernet_seconds_per_epoch") or None
    wall = metrics.get("search_seconds")
    summary = run_dir.read_arch().get("search_summary") or {}
    return {
        "row": row.shown_as, "dataset": row.dataset, "table": row.table, "group": row.group, "bits": bits,
        "seed": seed, "test_mAP@100": metrics["test_mAP@100"], "val_mAP@100": metrics["val_mAP@100"],
        # Random search trains no supernet (its "epochs" average to 0): no entry rather than 0 s.
        "supernet_s_per_epoch": supernet,
        # the paper's "Search/time": search after the supernet's training (SPOS's evolution; 0 for DARTS, AV-NAS)
        "search_s": None if wall is None else max(0.0, wall - (supernet or 0.0) * settings.search_epochs),
        "search_wall_s": wall,
        "train_s_per_epoch": metrics.get("finetune_seconds_per_epoch", metrics.get("train_seconds_per_epoch")),
        "train_epochs": settings.finetune_epochs,
        "infer_s_per_12.5k": metrics["infer_seconds_per_12.5k"], "params": metrics["params"],
        "changed_cells": summary.get("changed"), "cells": summary.get("cells") if "changed" in summary else None,
        "run": str(out), "cached": cached,
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


def run_table(rows: list[Row], bits: list[int], seeds: list[int] | dict[int, list[int]], base: dict[str, Any],
              work: Path, progress: bool = False, jobs: int = 1, threads: int | None = None) -> pd.DataFrame:
    """Every (row, bits, seed) run, with a progress bar over runs; records in (bits, row, seed) order.

    ``seeds``: the seeds of every code length, or per code length (e.g. 3 seeds at 32 bits, 1 at 64).

    ``jobs > 1`` runs that many at a time in worker processes with ``threads`` torch threads each (small
    networks use a second thread poorly, so on a CPU parallel runs finish the table sooner). A row that shares
    another selected row's search (:attr:`Row.share_search_with`) starts once that run has finished. A failed
    run stops the table; finished runs stay cached in ``work``.
    """
    per_bits = seeds if isinstance(seeds, dict) else dict.fromkeys(bits, seeds)
    ordered = [(row, b, s) for b in bits for row in rows for s in per_bits[b]]
    names = {row.name for row in rows}
    missing = sorted({row.derive_from for row in rows if row.derive_from and row.derive_from not in names})
    if missing:
        raise SettingsError(f"--rows: derived rows need their source row(s) {missing} selected too")
    # source row → pruning rules of the selected rows that reuse its search
    also: dict[str, tuple[str, ...]] = {}
    for row in rows:
        if row.share_search_with in names:
            rule = row.settings.get("prune", RunSettings.prune)
            also[row.share_search_with] = (*also.get(row.share_search_with, ()), rule)
    position = {(row.name, b, s): i for i, (row, b, s) in enumerate(ordered)}
    waits_for = {i: position[(row.depends_on, b, s)] for i, (row, b, s) in enumerate(ordered)
                 if row.depends_on in names}
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

        if jobs <= 1:  # registry order: a source row (shared search, derived architecture) comes before its users
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
    cache = RunDir(run).query_ap_path(split)
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
    mean, half = mean_ci95(values.to_numpy())
    return f"{mean:.{digits}f}" if np.isnan(half) else f"{mean:.{digits}f} ± {half:.{digits}f}"


def _paper(row: Row, bits: list[int]) -> list[str]:
    cells = []
    for index in range(len(PAPER_DATASETS)):
        numbers = [row.paper.get(b, (None, None))[index] for b in bits]
        cells.append(" / ".join("–" if n is None else f"{n:.4f}" for n in numbers))
    return cells


def _table_markdown(results: pd.DataFrame, table: str, bits: list[int]) -> str:
    timing_bits = 64 if 64 in bits else max(bits)
    datasets = sorted(results["dataset"].unique())
    header = ([f"mAP@100 {d} {b} bits" for d in datasets for b in bits]
              + [f"paper {name} ({'/'.join(map(str, bits))})" for name in PAPER_DATASETS]
              + [f"SuperNet s/epoch ({timing_bits})", "Search s", "Search wall s", "Train s/epoch", "Train epochs",
                 "Infer s/12.5k", f"#Params ({timing_bits})"])
    lines = ["| Method | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    for name in dict.fromkeys(results.loc[results["table"] == table, "row"]):
        row, runs = ROWS[name], results[results["row"] == name]
        home = runs[runs["dataset"] == row.dataset]  # timings of the row's own run, not of its cross-test
        at = home[home["bits"] == timing_bits]
        cells = [_cell(runs.loc[(runs["dataset"] == d) & (runs["bits"] == b), "test_mAP@100"])
                 for d in datasets for b in bits] + _paper(row, bits)
        cells += [_cell(at["supernet_s_per_epoch"], 1), _cell(at["search_s"], 1), _cell(at["search_wall_s"], 1),
                  _cell(at["train_s_per_epoch"], 1), f"{int(at['train_epochs'].iloc[0])}" if len(at) else "–",
                  _cell(at["infer_s_per_12.5k"], 2), f"{int(at['params'].iloc[0]):,}" if len(at) else "–"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _home_runs(results: pd.DataFrame, name: str, bits: int) -> pd.DataFrame:
    """The runs of a row on dataset A (where the claims are checked) at one code length."""
    return results[(results["row"] == name) & (results["bits"] == bits) & (results["dataset"] == "A")]


def _per_seed(results: pd.DataFrame, name: str, bits: int) -> pd.Series:
    """Test mAP@100 of a row on dataset A, by seed (Random rows: one row per seed)."""
    return _home_runs(results, name, bits).groupby("seed")["test_mAP@100"].mean()


def _mean_map(results: pd.DataFrame, name: str, bits: int) -> float | None:
    values = _per_seed(results, name, bits)
    return float(values.mean()) if len(values) else None


def _paired(ours: pd.Series, theirs: pd.Series) -> tuple[float, float, int]:
    """(mean, CI half-width, seeds) of the difference ours − theirs, paired by seed. mAP is the mean AP over the
    test queries, so each seed's difference is the mean of its per-query paired differences."""
    both = pd.concat([ours, theirs], axis=1, join="inner").dropna()
    mean, half = mean_ci95((both.iloc[:, 0] - both.iloc[:, 1]).to_numpy())
    return mean, half, len(both)


def _verdict(mean: float, half: float) -> str:
    if mean - half > 0:
        return "holds"
    if mean + half < 0:
        return "does NOT hold (reversed)"
    return "not shown (the 95 % CI includes 0)"


def _combined(verdicts: list[str]) -> str:
    """A claim made of parts: holds when every part holds, does not when any part is reversed, else not shown."""
    if all(v == "holds" for v in verdicts):
        return "holds"
    return "does NOT hold" if any(v.startswith("does NOT") for v in verdicts) else "not shown"


def _claim(label: str, ours: pd.Series, others: dict[str, pd.Series]) -> str:
    """One claim "ours > each of ``others``": holds when every paired difference's CI is above 0."""
    parts, verdicts = [], []
    for name, theirs in others.items():
        mean, half, n = _paired(ours, theirs)
        verdicts.append(_verdict(mean, half))
        parts.append(f"{name} {mean:+.4f} ± {half:.4f}")
    return f"- {label}: **{_combined(verdicts)}** — AV-NAS − other (mean ± 95 % CI over {n} seeds): {'; '.join(parts)}."


def claims(results: pd.DataFrame, bits: list[int], min_seeds: int = 3) -> list[str]:
    """The paper's claims, checked on dataset A's results: one line each, saying whether and by how much.

    A claim holds when the paired (by seed) difference's 95 % confidence interval excludes 0 in AV-NAS's
    favour for every row it is compared with; with fewer than ``min_seeds`` seeds no claim is checked.
    """
    avnas = "AV-NAS (Arch-1)"
    seeds = {b: _home_runs(results, avnas, b)["seed"].nunique() for b in bits}
    lines = [f"- {b} bits, {n} seed(s): no claim checked (claims need ≥ {min_seeds} seeds; pass --seeds {min_seeds})."
             for b, n in seeds.items() if 0 < n < min_seeds]
    names = list(dict.fromkeys(results["row"]))
    groups = {group: [n for n in names if ROWS[n].group == group] for group in ("nas", "expert-hashing", "expert")}
    randoms = [n for n in names if ROWS[n].group == "random"]
    for b in [b for b in bits if seeds[b] >= min_seeds]:
        ours = _per_seed(results, avnas, b)
        for group, what in (("nas", "every NAS baseline"), ("expert-hashing", "every expert video-hashing method"),
                            ("expert", "every expert network (Table 3)")):
            if groups[group]:
                lines.append(_claim(f"AV-NAS > {what} ({b} bits)", ours,
                                    {n: _per_seed(results, n, b) for n in groups[group]}))
        visual, audio = _per_seed(results, "Visual only", b), _per_seed(results, "Audio only", b)
        if len(visual) and len(audio):
            av_v, v_a = _paired(ours, visual), _paired(visual, audio)
            verdict = _combined([_verdict(*av_v[:2]), _verdict(*v_a[:2])])
            lines.append(f"- audio-visual > visual-only > audio-only ({b} bits): **{verdict}** — AV − V "
                         f"{av_v[0]:+.4f} ± {av_v[1]:.4f}, V − A {v_a[0]:+.4f} ± {v_a[1]:.4f}.")
        changed = _home_runs(results, avnas, b)
        if len(randoms) and changed["cells"].notna().all():
            share = (changed["changed_cells"] / changed["cells"]).to_numpy()
            random_mean = pd.concat([_per_seed(results, n, b) for n in randoms], axis=1).mean(axis=1)
            mean, half, _ = _paired(ours, random_mean)
            moved = "holds" if (share >= 1 / 3).all() else "does NOT hold"
            verdict = _combined([moved, _verdict(mean, half)])
            lines.append(f"- the search is informative ({b} bits): **{verdict}** — cells whose choice changed from "
                         f"α's initial argmax: {', '.join(f'{x:.0%}' for x in share)} per seed (needs ≥ 33 %); "
                         f"AV-NAS − mean of Random 1–5: {mean:+.4f} ± {half:.4f}.")
    timing_bits = 64 if 64 in bits else max(bits)
    epochs = {name: _home_runs(results, name, timing_bits)["supernet_s_per_epoch"] for name in (avnas, "DARTS")}
    if all(len(v.dropna()) for v in epochs.values()):
        ratio = epochs[avnas].mean() / epochs["DARTS"].mean()
        verdict = "holds" if ratio < 1 else "does NOT hold"
        lines.append(f"- one-level supernet epoch < DARTS's ({timing_bits} bits): {verdict} — "
                     f"{epochs[avnas].mean():.1f} s vs {epochs['DARTS'].mean():.1f} s = {ratio:.2f}× "
                     "(paper: 0.48×, 66 s vs 137 s on a V100; runs side by side, so a timing, not a benchmark).")
    return lines


def _seed_mean_ap(results: pd.DataFrame, name: str, bits: int) -> np.ndarray:
    runs = _home_runs(results, name, bits)["run"]
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


def write_report(results: pd.DataFrame, out: Path, bits: list[int], command: str, notes: str = "",
                 commit_id: str | None = None) -> str:
    """Write ``table2.csv`` and ``table2.md`` under ``out``; return the Markdown. ``commit_id``: the commit the
    runs started at (default: now, which an earlier report in ``out`` makes look dirty)."""
    out.mkdir(parents=True, exist_ok=True)
    results.drop(columns=["run"]).to_csv(out / "table2.csv", index=False, float_format="%.4f")
    seeds = "; ".join(f"{', '.join(map(str, sorted(group['seed'].unique())))} at {b} bits"
                      for b, group in results.groupby("bits"))
    parts = [
        "# AV-NAS Table 2 and Table 3, reproduced", "",
        f"Command: `{command}`  ", f"Commit: {commit_id or commit()}  ", f"Machine: {machine()}  ",
        f"Seeds: {seeds} (cells are mean ± 95 % CI half-width over seeds when there are "
        "several)  ",
        "mAP@100 on the test queries against the retrieval set; times at the larger code length, of the row's "
        "own run. Dataset A plays ActivityNet's part, B FCVID's: Arch-1 is searched on A, Arch-2 on B, and each "
        "architecture is also trained from scratch on the other (the paper's cross-test); Visual/Audio only are "
        "Arch-1 with one branch and Self-Fusion (" + SELF_FUSION + ") in place of I1, I2, F. Rows trained from "
        "scratch train for the supernet + fine-tune epochs (Train epochs). Search s: search after the supernet "
        "(the paper's Search/time: SPOS's evolution; 0 for DARTS and AV-NAS); Search wall s: the strategy's whole "
        "run. Paper columns: SPEC §6 (V100 GPU, real CLIP/AST features) — shape to compare, not numbers to match.",
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
    parser.add_argument("--data", default="embedded", help="dataset A: a JSON config, or 'embedded' (default)")
    parser.add_argument("--data-b", help="dataset B (FCVID's part: Arch-2's search, the cross-test); default "
                                         "'embedded-b' when --data is 'embedded'")
    parser.add_argument("--profile", default="bench-quick", choices=sorted(BENCH_PROFILES))
    parser.add_argument("--rows", help=f"comma-separated rows (default: all): {', '.join(ROWS)}")
    parser.add_argument("--bits", default="32,64", help="code lengths (default 32,64)")
    parser.add_argument("--seeds", default="1", help="seeds per cell: seed, seed+1, …; a number, or per code length "
                                                     "as BITS:N,… (e.g. 32:3,64:1); default 1")
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
    # Bad arguments are usage errors, as in every avnas command: argparse's message and exit code 2.
    try:
        bits = sorted({int(b) for b in args.bits.split(",")})
    except ValueError:
        parser.error(f"--bits: expected comma-separated integers, got {args.bits!r}")
    try:
        rows = select_rows(args.rows)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        counts = ({int(b): int(n) for b, n in (item.split(":") for item in args.seeds.split(","))}
                  if ":" in args.seeds else dict.fromkeys(bits, int(args.seeds)))
    except ValueError:
        counts = {}
    if sorted(counts) != bits or min(counts.values()) < 1:
        parser.error(f"--seeds: expected a positive integer or BITS:N for each of --bits {bits}, got {args.seeds!r}")
    missing = sorted({row.derive_from for row in rows} - {row.name for row in rows} - {None})
    if missing:
        parser.error(f"--rows: derived rows need their source row(s) {missing} selected too")
    data_b = args.data_b or ("embedded-b" if args.data == "embedded" else None)
    if data_b is None and any(row.dataset == "B" for row in rows):
        parser.error("--data-b: rows " + ", ".join(repr(r.name) for r in rows if r.dataset == "B")
                     + " run on a second dataset; give its config")
    cores = os.cpu_count() or 1
    jobs = args.jobs if args.jobs is not None else (cores if args.device == "cpu" else 1)
    if jobs < 1 or (args.threads is not None and args.threads < 1):
        parser.error(f"--jobs/--threads: expected positive integers, got {args.jobs}/{args.threads}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        threads = args.threads or max(1, cores // jobs)
        apply_thread_policy(threads)  # this process's own work (codes for the figures) and the machine line
        base = {**BENCH_PROFILES[args.profile], "data": args.data, "device": args.device, "profile": args.profile,
                "data_b": data_b}
        for name, value in (("search_epochs", args.epochs), ("finetune_epochs", args.finetune_epochs),
                            ("batch_size", args.batch_size)):
            if value is not None:
                base[name] = value
        for row in rows:  # bad settings fail before any run starts
            _settings(row, bits[0], args.seed, base)
        data_name = "embedded" if args.data == "embedded" else Path(args.data).stem
        work = args.work or Path("runs") / "table2" / f"{data_name}-{args.profile}"
        seeds = {b: [args.seed + i for i in range(n)] for b, n in counts.items()}
        for name in {args.data, data_b} & set(EMBEDDED_SETS):
            embedded_config(name)  # generate the cached sets once, before parallel runs would all race to
        started, started_at = time.perf_counter(), commit()
        results = run_table(rows, bits, seeds, base, work, jobs=jobs, threads=threads)
        minutes = (time.perf_counter() - started) / 60
        computed = int((~results.pop("cached")).sum())
        command = "python -m benchmarks.table2 " + shlex.join(argv if argv is not None else sys.argv[1:])
        notes = (f"Profile `{args.profile}`: " + ", ".join(f"{k} {base[k]}" for k in sorted(BENCH_PROFILES[
            args.profile])) + f"; data A `{args.data}`, B `{data_b}`; {jobs} run(s) at a time, {threads} torch "
            "thread(s) each "
            f"(times are per run, measured side by side). This invocation: {computed} of {len(results)} runs "
            f"computed, the rest read back from `{work}`, in {minutes:.1f} min.")
        own = [f"{row.name} {row.quick}" for row in rows if row.quick and args.profile == "bench-quick"]
        if own:
            notes += " Rows with quick-profile settings of their own: " + "; ".join(own) + "."
        print(write_report(results, args.out, bits, command.strip(), notes, commit_id=started_at))
        if not args.no_figures:
            from benchmarks.figures import write_figures
            for path in write_figures(results[results["dataset"] == "A"], args.out, bits):
                print(f"wrote {path}")
    except AVNASError as exc:  # bad settings or data, a run directory made otherwise; anything else is a bug
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
