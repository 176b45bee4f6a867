"""Supernet training cost: AV-NAS's one-level search against NNI's two-level DARTS, same space and data.

Run ``python -m benchmarks.supernet_speed [--data embedded] [--batch-size 32] [--batches 10] [--warmup 2]
[--bits 64] [--threads 1] [--device cpu] [--repeats 1] [--json PATH]``.

Each strategy trains its supernet for ``--batches`` training iterations (Lightning's
``limit_train_batches``; no validation) in a **fresh process**, so peak memory is its own. An iteration of
one-level AV-NAS is one forward/backward on a training batch stepping W and α; an iteration of NNI's DARTS is
an α step on a validation batch plus a W step on a training batch. Reported per strategy: the median and
mean seconds of an iteration after ``--warmup`` iterations, the seconds of a full supernet epoch
(mean × iterations of a full epoch: the training batches for AV-NAS; for DARTS, NNI's ``max_size_cycle``
pairing, i.e. max(training, validation) batches), and the peak memory growth during training: on CUDA
``torch.cuda.max_memory_allocated`` above what was allocated before, on CPU the growth of the process's
peak resident set (``ru_maxrss``) above its size before training (tracemalloc cannot see torch's
allocator). The ratio AV-NAS / DARTS is printed (paper, Table 2, ActivityNet 64 bits: 1m6s / 2m17s = 0.48).

On a 2-core machine shared with other work keep ``--threads 1``: two OpenMP threads competing with another
busy process make small tensor ops orders of magnitude slower.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import platform
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks._common import save_json

__all__ = ["main", "measure", "run_benchmark", "PAPER_RATIO"]

logger = logging.getLogger(__name__)

#: AV-NAS / DARTS supernet seconds per epoch in the paper (Table 2, ActivityNet, 64 bits: 66 s / 137 s).
PAPER_RATIO = round(66 / 137, 2)

STRATEGIES = ("avnas", "darts")


def _rss_bytes() -> int:
    """Current resident set size of this process (Linux ``/proc``), 0 where unavailable."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize()
    except (OSError, IndexError, ValueError):
        return 0


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def measure(strategy_name: str, data: str = "embedded", batch_size: int = 32, batches: int = 10, warmup: int = 2,
            bits: int = 64, threads: int = 1, device: str = "cpu", seed: int = 3346) -> dict[str, Any]:
    """Train one strategy's supernet for ``batches`` iterations in this process and time it.

    Returns
    -------
    dict
        Iteration times, seconds per full epoch, iterations per full epoch and peak memory growth (bytes).
    """
    import warnings

    warnings.filterwarnings("ignore", message=".*is found to be not a nn.Module.*")
    from avnas_nni.console import quiet_libraries

    quiet_libraries()
    import pytorch_lightning as pl
    import torch
    from nni.nas.execution import SequentialExecutionEngine
    from nni.nas.space import RawFormatModelSpace
    from pytorch_lightning.callbacks import Callback
    from pytorch_lightning.utilities.combined_loader import CombinedLoader

    from avnas_nni.evaluator import make_evaluator
    from avnas_nni.pipeline import RunSettings, build_space
    from avnas_nni.threads import apply_thread_policy
    from strategies import make_strategy

    class IterationTimer(Callback):
        def __init__(self):
            self.seconds: list[float] = []
            self._start = 0.0

        def _sync(self, pl_module):
            if pl_module.device.type == "cuda":
                torch.cuda.synchronize(pl_module.device)

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self._sync(pl_module)
            self._start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self._sync(pl_module)
            self.seconds.append(time.perf_counter() - self._start)

    apply_thread_policy(threads)  # as a run: these threads, and freed memory kept in the process
    pl.seed_everything(seed, verbose=False)
    settings = RunSettings.resolve("quick", strategy=strategy_name, data=data, bits=bits, batch_size=batch_size,
                                   seed=seed, device=device)
    space = build_space(settings)
    timer = IterationTimer()
    evaluator = make_evaluator(data, max_epochs=1, batch_size=batch_size, accelerator=settings.accelerator,
                               limit_train_batches=batches, callbacks=[timer],
                               trainer_kwargs={"limit_val_batches": 0}, lr=settings.search_lr, tau=settings.tau,
                               n_neg=settings.n_neg, topk=settings.topk, seed=seed)
    # arc_lr None: each strategy's own default architecture learning rate, as in a pipeline run
    arc_lr = {} if settings.arc_lr is None else {"arc_learning_rate": settings.arc_lr}
    strategy = make_strategy(strategy_name, seed=seed, **arc_lr)
    # Iterations of a full epoch: the loader the strategy hands Lightning (a dict is NNI's train/val pairing).
    train_loader = strategy.train_dataloader(lambda: evaluator.train_dataloaders, lambda: evaluator.val_dataloaders)
    if isinstance(train_loader, dict):
        combined = CombinedLoader(train_loader, "max_size_cycle")
        iter(combined)
        full_epoch = len(combined)
    else:
        full_epoch = len(train_loader)

    cuda = settings.accelerator == "gpu"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        allocated_before = torch.cuda.memory_allocated()
    rss_before = _rss_bytes()
    started = time.perf_counter()
    strategy(RawFormatModelSpace(space, evaluator), SequentialExecutionEngine())
    wall = time.perf_counter() - started
    if cuda:
        peak_growth = torch.cuda.max_memory_allocated() - allocated_before
        memory_kind = "cuda max_memory_allocated growth"
    else:
        peak_growth = max(_peak_rss_bytes() - rss_before, 0)
        memory_kind = "peak RSS growth"

    timed = timer.seconds[warmup:] or timer.seconds
    median = statistics.median(timed)  # robust to load spikes and to a short last batch
    return {
        "strategy": strategy_name, "iterations": len(timer.seconds), "timed_iterations": len(timed),
        "iteration_seconds": [round(s, 4) for s in timer.seconds],
        "median_iteration_seconds": round(median, 4), "mean_iteration_seconds": round(statistics.fmean(timed), 4),
        "iterations_per_epoch": full_epoch, "seconds_per_epoch": round(median * full_epoch, 2),
        "fit_wall_seconds": round(wall, 2), "peak_memory_bytes": int(peak_growth), "memory_kind": memory_kind,
        "params": sum(p.numel() for p in space.parameters()),
    }


def _measure_in_fresh_process(kwargs: dict[str, Any]) -> dict[str, Any]:
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measure, **kwargs).result()


def run_benchmark(data: str = "embedded", batch_size: int = 32, batches: int = 10, warmup: int = 2, bits: int = 64,
                  threads: int = 1, device: str = "cpu", repeats: int = 1, seed: int = 3346) -> dict[str, Any]:
    """Measure both strategies ``repeats`` times (alternating, each run in a fresh process) and compare."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in STRATEGIES}
    for _ in range(repeats):
        for name in STRATEGIES:
            runs[name].append(_measure_in_fresh_process(dict(
                strategy_name=name, data=data, batch_size=batch_size, batches=batches, warmup=warmup, bits=bits,
                threads=threads, device=device, seed=seed)))
            logger.info("%s: %.3f s per iteration (median)", name, runs[name][-1]["median_iteration_seconds"])

    def summary(name: str) -> dict[str, Any]:
        return {"median_iteration_seconds": statistics.median(r["median_iteration_seconds"] for r in runs[name]),
                "iterations_per_epoch": runs[name][0]["iterations_per_epoch"],
                "seconds_per_epoch": statistics.median(r["seconds_per_epoch"] for r in runs[name]),
                "peak_memory_bytes": max(r["peak_memory_bytes"] for r in runs[name]), "runs": runs[name]}

    avnas, darts = summary("avnas"), summary("darts")
    import torch

    return {
        "data": data, "batch_size": batch_size, "batches": batches, "warmup": warmup, "bits": bits,
        "threads": threads, "device": device, "repeats": repeats, "seed": seed,
        "avnas": avnas, "darts": darts,
        "time_ratio": round(avnas["seconds_per_epoch"] / darts["seconds_per_epoch"], 3),
        "memory_ratio": round(avnas["peak_memory_bytes"] / darts["peak_memory_bytes"], 3)
        if darts["peak_memory_bytes"] else None,
        "paper_time_ratio": PAPER_RATIO,
        "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" and torch.cuda.is_available() else None,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.supernet_speed", description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="embedded", help="dataset config path or 'embedded'")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=10, help="training iterations per strategy")
    parser.add_argument("--warmup", type=int, default=2, help="iterations left out of the timing")
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--repeats", type=int, default=1, help="runs per strategy (median time, max memory)")
    parser.add_argument("--seed", type=int, default=3346)
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("batch_size", "batches", "bits", "threads", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not 0 <= args.warmup < args.batches:
        parser.error(f"--warmup must be in [0, --batches), got {args.warmup}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = run_benchmark(args.data, args.batch_size, args.batches, args.warmup, args.bits, args.threads,
                           args.device, args.repeats, args.seed)
    print(f"supernet training, data {result['data']}, batch {result['batch_size']}, {result['bits']} bits, "
          f"{result['device']}{' (' + result['gpu'] + ')' if result['gpu'] else ''}, {result['threads']} threads, "
          f"{result['batches']} iterations ({result['warmup']} warm-up) x {result['repeats']}")
    for name, label in (("avnas", "AV-NAS one-level"), ("darts", "NNI DARTS (2-level)")):
        part = result[name]
        print(f"{label:22s} {part['median_iteration_seconds']:.3f} s/iteration x {part['iterations_per_epoch']} "
              f"= {part['seconds_per_epoch']:.1f} s/epoch, peak memory +{part['peak_memory_bytes'] / 2**20:.0f} MiB")
    memory = f"{result['memory_ratio']:.2f}x" if result["memory_ratio"] is not None else "n/a"
    print(f"AV-NAS / DARTS: time {result['time_ratio']:.2f}x (paper {PAPER_RATIO:.2f}x, target <= 0.5x), "
          f"memory {memory}")
    save_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
