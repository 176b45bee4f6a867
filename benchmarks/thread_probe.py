"""Seconds of one supernet step (one-level AV-NAS) and one fine-tune step (the mamba expert) in this process,
for choosing the thread policy (avnas_nni.threads): run it under each OMP_WAIT_POLICY / thread count / neighbour.

Run ``OMP_WAIT_POLICY=PASSIVE python -m benchmarks.thread_probe --threads 1 --steps 8``; prints one JSON line.
The wait policy must be in the environment before the process starts (GNU OpenMP reads it when it loads).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Sequence

__all__ = ["main", "finetune_step_seconds"]


def finetune_step_seconds(steps: int, warmup: int = 2, arch: str = "mamba", batch_size: int = 32) -> float:
    """Median seconds of a fine-tune step (forward, InfoNCE, backward, Adam) of ``arch`` on the embedded data."""
    import torch

    from avnas_nni.evaluator import HashingModule
    from avnas_nni.pipeline import RunSettings, build_space, resolve_arch

    settings = RunSettings.resolve("quick", strategy="fixed", batch_size=batch_size)
    overrides, sample = resolve_arch(arch, settings)
    model = build_space(settings, **overrides).freeze(sample)
    module = HashingModule("embedded")
    module.set_model(model)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    times = []
    for step in range(steps + warmup):
        started = time.perf_counter()
        positions = torch.arange(step * batch_size, (step + 1) * batch_size)
        loss = module.triplet_loss((torch.zeros(batch_size, dtype=torch.long), positions))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return statistics.median(times[warmup:])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.thread_probe", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per stage (after 2 warm-up steps)")
    parser.add_argument("--stages", default="supernet,finetune")
    args = parser.parse_args(argv)
    import torch

    from avnas_nni.console import quiet_libraries

    quiet_libraries()
    torch.set_num_threads(args.threads)
    out = {"threads": args.threads, "policy": os.environ.get("OMP_WAIT_POLICY", "default")}
    if "supernet" in args.stages:
        from benchmarks.supernet_speed import measure

        out["supernet"] = measure("avnas", batches=args.steps + 2, warmup=2,
                                  threads=args.threads)["median_iteration_seconds"]
    if "finetune" in args.stages:
        out["finetune"] = finetune_step_seconds(args.steps)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
