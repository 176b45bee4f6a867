"""Audio-visual vs visual-only vs audio-only expert networks on a dataset (default: the embedded one).

The embedded synthetic dataset is only meaningful if audio-visual > visual-only > audio-only with clear
margins, as on the paper's real features (Table 2, lines 21–22). This trains each expert in the three
modality settings with the same profile and writes a CSV and a Markdown table::

    python -m benchmarks.embedded_modalities --out benchmarks/results/embedded_modalities
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import pandas as pd

from avnas_nni.pipeline import RunSettings, run_train
from benchmarks._common import save_table

__all__ = ["main"]

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="embedded")
    parser.add_argument("--experts", default="transformer_plus,mamba")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--seed", type=int, default=3346)
    parser.add_argument("--in-batch-negatives", action="store_true", help="InfoNCE with in-batch negatives too")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/embedded_modalities"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for expert in args.experts.split(","):
            for modality in ("audio-visual", "visual", "audio"):
                arch = expert if modality == "audio-visual" else f"{expert}-{modality}"
                settings = RunSettings.resolve("quick", strategy="fixed", arch=arch, data=args.data,
                                               bits=args.bits, finetune_epochs=args.epochs, search_epochs=0,
                                               seed=args.seed, in_batch_negatives=args.in_batch_negatives)
                metrics = run_train(settings, Path(tmp) / arch)
                rows.append({"expert": expert, "modalities": modality, "test_mAP@100": metrics["test_mAP@100"],
                             "val_mAP@100": metrics["val_mAP@100"], "params": metrics["params"],
                             "train_s_per_epoch": metrics["train_seconds_per_epoch"]})
                logger.info("%s", rows[-1])
    loss = "InfoNCE + in-batch negatives" if args.in_batch_negatives else "the paper's triplet InfoNCE"
    title = f"Modalities on `{args.data}` ({args.bits} bits, {args.epochs} epochs, seed {args.seed}, {loss})"
    print(save_table(pd.DataFrame(rows), args.out, title, "benchmarks.embedded_modalities", argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
