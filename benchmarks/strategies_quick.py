"""Time and mAP of every search strategy on one dataset, same space, same settings, in one run.

Each strategy runs the whole pipeline (search, prune, fine-tune, test) with the ``quick`` profile unless
told otherwise, and one table collects test mAP@100, the architecture's size and the timings::

    python -m benchmarks.strategies_quick --out benchmarks/results/strategies_quick
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from avnas_nni.pipeline import PROFILES, RunSettings, run_search
from benchmarks._common import save_table
from strategies import STRATEGIES

__all__ = ["main"]

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="embedded")
    parser.add_argument("--strategies", default="avnas,darts,proxyless,spos,enas,random")
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--seed", type=int, default=3346)
    parser.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    parser.add_argument("--epochs", type=int, help="search epochs (default: the profile's)")
    parser.add_argument("--finetune-epochs", type=int, help="fine-tune epochs (default: the profile's)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/strategies_quick"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    unknown = set(args.strategies.split(",")) - set(STRATEGIES)
    if unknown:
        parser.error(f"unknown strategies {sorted(unknown)}; expected some of {sorted(STRATEGIES)}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.strategies.split(","):
            settings = RunSettings.resolve(args.profile, strategy=name, data=args.data, bits=args.bits,
                                           seed=args.seed, search_epochs=args.epochs,
                                           finetune_epochs=args.finetune_epochs)
            started = time.perf_counter()
            metrics = run_search(settings, Path(tmp) / name)
            rows.append({"strategy": name, "test_mAP@100": metrics["test_mAP@100"],
                         "val_mAP@100": metrics["val_mAP@100"], "params": metrics["params"],
                         "supernet_s_per_epoch": metrics["supernet_seconds_per_epoch"],
                         "search_s": metrics["search_seconds"],
                         "finetune_s_per_epoch": metrics["finetune_seconds_per_epoch"],
                         "total_s": time.perf_counter() - started})
            logger.info("%s", rows[-1])
    epochs = f"{settings.search_epochs} + {settings.finetune_epochs} epochs"
    title = f"Search strategies on `{args.data}` ({args.bits} bits, profile {args.profile}: {epochs}, seed {args.seed})"
    notes = "mAP@100 in the AV-NAS/AVHash (hits-normalised) form; queries = test, database = train."
    print(save_table(pd.DataFrame(rows), args.out, title, "benchmarks.strategies_quick", argv, notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
