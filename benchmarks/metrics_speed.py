"""Speed and memory of the retrieval metrics at FCVID scale, on random codes and labels.

Run ``python -m benchmarks.metrics_speed [--queries 22754 --database 45508 --bits 64 --classes 239]
[--memory-mb 512] [--json PATH]``. It times mAP@100 alone, then the one-pass report (mAP@100 with P@K and
R@K for K in 5..200), and prints seconds, the peak of NumPy allocations (tracemalloc) and the peak
resident set size of the process (getrusage), plus the BLAS/OpenMP thread pools in use.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from avnas_nni.metrics import mean_average_precision, retrieval_report
from benchmarks._common import save_json

__all__ = ["main", "run_benchmark"]

logger = logging.getLogger(__name__)


def _thread_info() -> dict[str, Any]:
    """Threads the numerical libraries may use; threadpoolctl is optional (not a project dependency)."""
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        if variable in os.environ:
            info[variable] = os.environ[variable]
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        info["threadpools"] = "threadpoolctl not installed"
    else:
        info["threadpools"] = [
            {"api": pool.get("internal_api"), "threads": pool.get("num_threads")}
            for pool in threadpool_info()
        ]
    return info


def _peak_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _timed(function, *args, **kwargs) -> tuple[Any, float, float]:
    """Return (result, seconds, peak traced MiB) of one call."""
    tracemalloc.start()
    start = time.perf_counter()
    result = function(*args, **kwargs)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, seconds, peak / 2**20


def run_benchmark(
    queries: int = 22_754,
    database: int = 45_508,
    bits: int = 64,
    classes: int = 239,
    memory_mb: float = 512,
    seed: int = 0,
) -> dict[str, Any]:
    """Time mAP@100 and the full report on random ±1 codes and single-label class ids.

    Returns
    -------
    dict
        Sizes, seconds, peak traced and resident memory (MiB), the metric values and thread information.
    """
    rng = np.random.default_rng(seed)
    query_codes = rng.choice(np.array([-1, 1], dtype=np.int8), size=(queries, bits))
    database_codes = rng.choice(np.array([-1, 1], dtype=np.int8), size=(database, bits))
    query_labels = rng.integers(0, classes, queries)
    database_labels = rng.integers(0, classes, database)
    case = (query_codes, database_codes, query_labels, database_labels)
    rss_before = _peak_rss_mib()

    map_value, map_seconds, map_peak = _timed(mean_average_precision, *case, topk=100, memory_mb=memory_mb)
    report, report_seconds, report_peak = _timed(retrieval_report, *case, topk=100, memory_mb=memory_mb)
    return {
        "queries": queries,
        "database": database,
        "bits": bits,
        "classes": classes,
        "memory_mb": memory_mb,
        "map100_seconds": round(map_seconds, 3),
        "map100_peak_traced_mib": round(map_peak, 1),
        "report_seconds": round(report_seconds, 3),
        "report_peak_traced_mib": round(report_peak, 1),
        "peak_rss_mib_before": round(rss_before, 1),
        "peak_rss_mib": round(_peak_rss_mib(), 1),
        "map100": map_value,
        "report": report,
        "threads": _thread_info(),
        "numpy": np.__version__,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.metrics_speed", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--queries", type=int, default=22_754, help="number of queries (FCVID test: 22,754)")
    parser.add_argument("--database", type=int, default=45_508, help="database size (FCVID train: 45,508)")
    parser.add_argument("--bits", type=int, default=64, help="code length q")
    parser.add_argument("--classes", type=int, default=239, help="number of classes (single-label)")
    parser.add_argument("--memory-mb", type=float, default=512, help="working-memory budget of the metrics")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("queries", "database", "bits", "classes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    result = run_benchmark(args.queries, args.database, args.bits, args.classes, args.memory_mb, args.seed)
    print(
        f"{result['queries']} queries x {result['database']} database, {result['bits']} bits, "
        f"{result['classes']} classes, memory budget {result['memory_mb']} MiB"
    )
    rows = [
        ("mAP@100 (hits form)", f"{result['map100_seconds']:.2f} s", result["map100_peak_traced_mib"]),
        ("report (mAP@100, P@K, R@K)", f"{result['report_seconds']:.2f} s", result["report_peak_traced_mib"]),
    ]
    for label, seconds, peak in rows:
        print(f"{label:<27}{seconds:>10}  peak traced {peak} MiB")
    print(f"peak RSS of the process    {result['peak_rss_mib']} MiB (with the random data only: ", end="")
    print(f"{result['peak_rss_mib_before']} MiB)")
    print(f"threads                    {result['threads']}")
    print(f"mAP@100 on random codes    {result['map100']:.4f}")
    save_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
