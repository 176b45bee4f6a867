"""Does the data, not the seed, decide the architecture? α movement of the α strategies over seeds and α policies.

Each (strategy, α travel, seed) runs a search only (``finetune_epochs`` 0: the pruned network with its inherited
weights is tested as it is) under the quick profile, and one table collects from each run's ``arch.json``: cells
whose choice changed from α's initial argmax, undecided cells (top two within 0.02), mean normalised entropy, the
largest probability change, α's learning rate and the pruned net's val mAP; a second table gives, per strategy and
travel, how many cells the seeds' exports agree on against what independent uniform draws would give::

    python -m benchmarks.alpha_movement --strategies avnas --travel 4,12 --seeds 3346,1 \\
        --out benchmarks/results/alpha_movement

``--policy paper`` runs each strategy's published α settings instead (N(0, 1) and Adam 1e-3 for AV-NAS).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
from pathlib import Path

import pandas as pd

from avnas_nni.pipeline import RunSettings, run_search
from avnas_nni.runs import RunDir
from benchmarks._common import commit, save_table
from strategies import ALPHA_STRATEGIES

__all__ = ["main", "summarise_run", "agreement"]

logger = logging.getLogger(__name__)


def summarise_run(run: str | Path) -> dict:
    """One table line from a finished search's run directory."""
    run_dir = RunDir(run)
    record, settings, metrics = run_dir.read_arch(), run_dir.read_settings(), run_dir.read_metrics()
    summary = record.get("search_summary") or {}
    return {"strategy": settings["strategy"], "policy": settings.get("alpha_policy"),
            "travel": settings.get("alpha_travel") if settings.get("alpha_policy") == "budget" else None,
            "seed": settings["seed"], "alpha_lr": record.get("alpha_lr"), "cells": summary.get("cells"),
            "changed": summary.get("changed"), "undecided": summary.get("undecided"),
            "mean_entropy": summary.get("mean_entropy"), "max_moved": summary.get("max_moved"),
            "val_mAP@100 (pruned, no fine-tune)": metrics.get("val_mAP@100"), "arch": record["arch"]}


def agreement(runs: list[dict]) -> dict:
    """Cells on which every run's export agrees, and the expected count for independent uniform draws."""
    archs = [r["arch"] for r in runs]
    cells = list(archs[0])
    agree = sum(len({str(a[c]) for a in archs}) == 1 for c in cells)
    record = RunDir(runs[0]["run"]).read_arch()
    sizes = {c: len(record["probs"][c]) for c in cells}
    expected = sum(size ** (1 - len(archs)) for size in sizes.values())
    return {"runs": len(archs), "cells": len(cells), "agree": agree, "expected if uniform": round(expected, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="avnas bench alpha_movement", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="embedded")
    parser.add_argument("--strategies", default="avnas", help=f"comma-separated, of {', '.join(ALPHA_STRATEGIES)}")
    parser.add_argument("--travel", default="12", help="budget policy travels (logits), comma-separated")
    parser.add_argument("--policy", default="budget", choices=("budget", "paper"))
    parser.add_argument("--seeds", default="3346,1")
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--epochs", type=int, help="search epochs (default: the quick profile's)")
    parser.add_argument("--work", type=Path, default=Path("runs/alpha_movement"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/alpha_movement"))
    args = parser.parse_args(argv)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = sorted(set(strategies) - set(ALPHA_STRATEGIES))
    if unknown:
        parser.error(f"--strategies: {unknown} have no α; expected some of {ALPHA_STRATEGIES}")
    try:
        travels = [float(t) for t in args.travel.split(",")] if args.policy == "budget" else [None]
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        parser.error("--travel/--seeds: expected comma-separated numbers")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    made_at = commit()  # the code the runs are made with, whatever is committed while they run
    lines = []
    for strategy, travel, seed in itertools.product(strategies, travels, seeds):
        settings = RunSettings.resolve("quick", strategy=strategy, data=args.data, bits=args.bits, seed=seed,
                                       finetune_epochs=0, alpha_policy=args.policy, search_epochs=args.epochs,
                                       alpha_travel=travel)
        run = args.work / f"{strategy}-{args.policy}-{travel}-s{seed}"
        if not RunDir(run).metrics_path.is_file():
            run_search(settings, run, resume=RunDir(run).settings_path.is_file())
        lines.append({**summarise_run(run), "run": str(run)})
    table = pd.DataFrame(lines)
    agreements = pd.DataFrame([{"strategy": key[0], "travel": key[1], **agreement(list(group.to_dict("records")))}
                               for key, group in table.groupby(["strategy", "travel"], dropna=False, sort=False)])
    notes = ("Search only (0 fine-tune epochs): the val mAP is the pruned network's with the supernet's weights. "
             "Changed = the exported choice differs from the argmax of α's initialisation; undecided = margin "
             "p1 − p2 < 0.02. Seeds' agreement:\n\n" + agreements.to_markdown(index=False) + "\n")
    print(save_table(table.drop(columns=["arch", "run"]), args.out, "α movement over seeds and α policies",
                     "benchmarks.alpha_movement", argv, notes, made_at=made_at))
    return 0


if __name__ == "__main__":
    sys.exit(main())
