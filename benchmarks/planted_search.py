"""A search must find the planted candidate: success rate of the α strategies on a tiny generic space.

The space (:class:`PlantedSpace`) has one cell whose ``sees`` candidate is the only one that reads the two
informative features; ``blind`` (a constant) and ``noise_only`` (the other six features) cannot fit the task.
Each (strategy, α travel, seed) runs 3 epochs (24 α steps) and counts as *found* when it exports ``sees``, its
probability rose by ≥ 0.3 and never fell by more than 0.05 on the way. ``tests/test_planted_search.py`` asserts
the shipped settings on the same definitions; this benchmark records the counts::

    python -m benchmarks.planted_search --out benchmarks/results/planted_search
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

import nni
import pandas as pd
import torch
import torch.nn.functional as F
from nni.nas.evaluator.pytorch import DataLoader, Lightning, LightningModule, Trainer
from nni.nas.execution import SequentialExecutionEngine
from nni.nas.nn.pytorch import LayerChoice, ModelSpace
from nni.nas.space import RawFormatModelSpace
from pytorch_lightning.callbacks import Callback
from torch import nn
from torch.utils.data import TensorDataset

from avnas_nni.console import quiet_libraries
from benchmarks._common import commit, save_table
from strategies import make_strategy

__all__ = ["PlantedSpace", "search_planted", "is_found", "found", "main", "SEEDS", "EPOCHS"]

logger = logging.getLogger(__name__)

SEEDS = (0, 1, 2, 3, 4)
EPOCHS = 3  # the quick profile's supernet epochs


class Blind(nn.Module):
    """Ignores its input: a learnt constant, whatever the video (cannot fit a label that depends on the input)."""

    def __init__(self, width: int):
        super().__init__()
        self.value = nn.Parameter(torch.zeros(width))

    def forward(self, x):
        return self.value.expand(x.shape[0], -1)


class NoiseOnly(nn.Module):
    """A linear map of the input's uninformative half only."""

    def __init__(self, features: int, width: int):
        super().__init__()
        self.half, self.linear = features // 2, nn.Linear(features - features // 2, width)

    def forward(self, x):
        return self.linear(x[:, self.half:])


class PlantedSpace(ModelSpace):
    """Classify 4 classes that depend on the first two features; the ``reader`` cell's ``sees`` candidate is the
    only one that reads them. ``act`` is a neutral second cell (either candidate can work)."""

    def __init__(self, features: int = 8, width: int = 16):
        super().__init__()
        self.reader = LayerChoice({"blind": Blind(width), "noise_only": NoiseOnly(features, width),
                                   "sees": nn.Linear(features, width)}, label="reader")
        self.act = LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh()}, label="act")
        self.head = nn.Linear(width, 4)

    def forward(self, x):
        return self.head(self.act(self.reader(x)))


@nni.trace
class PlantedData(TensorDataset):
    """n points; the class is the quadrant of the first two features (the other six are noise)."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 8, generator=g)
        super().__init__(x, (x[:, 0] > 0).long() * 2 + (x[:, 1] > 0).long())


@nni.trace
class Classifier(LightningModule):
    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.model(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_mAP", (self.model(x).argmax(-1) == y).float().mean())  # the strategies' default monitor

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=1e-2)


class ProbsPerEpoch(Callback):
    def __init__(self, strategy):
        self.strategy, self.history = strategy, []

    def on_train_epoch_end(self, trainer, pl_module):
        self.history.append(self.strategy.export_probs()["reader"]["sees"])


def search_planted(name: str, seed: int, **strategy_kwargs) -> tuple[str, float, list[float]]:
    """(exported reader, p(sees) at the start, p(sees) after each epoch) of one seeded search."""
    torch.manual_seed(seed)
    strategy = make_strategy(name, seed=seed, **strategy_kwargs)
    recorder = ProbsPerEpoch(strategy)
    g = torch.Generator().manual_seed(seed)
    evaluator = Lightning(Classifier(), Trainer(max_epochs=EPOCHS, logger=False, enable_checkpointing=False,
                                                enable_progress_bar=False, enable_model_summary=False,
                                                num_sanity_val_steps=0, callbacks=[recorder]),
                          train_dataloaders=DataLoader(PlantedData(256, seed), batch_size=32, shuffle=True,
                                                       generator=g),
                          val_dataloaders=DataLoader(PlantedData(128, 1000 + seed), batch_size=64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        strategy(RawFormatModelSpace(PlantedSpace(), evaluator), SequentialExecutionEngine())
    return strategy.export()["reader"], strategy.init_probs["reader"]["sees"], recorder.history


def is_found(choice: str, start: float, history: list[float]) -> bool:
    """The planted candidate exported, its probability up by ≥ 0.3 and never down by more than 0.05."""
    path = [start, *history]
    monotone = all(b >= a - 0.05 for a, b in zip(path, path[1:], strict=False))
    return choice == "sees" and history[-1] - start >= 0.3 and monotone


def found(name: str, **strategy_kwargs) -> list[bool]:
    """Per seed of :data:`SEEDS`: :func:`is_found` of a search with ``strategy_kwargs``."""
    return [is_found(*search_planted(name, seed, **strategy_kwargs)) for seed in SEEDS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="avnas bench planted_search", description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", default="avnas,darts,proxyless")
    parser.add_argument("--travel", default="4,12", help="α travels (logits), comma-separated")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/planted_search"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    quiet_libraries()
    torch.set_num_threads(1)
    made_at, rows = commit(), []
    cases = [(name, {"alpha_travel": float(t)}) for t in args.travel.split(",") for name in args.strategies.split(",")]
    cases.append(("avnas", {"arc_learning_rate": 0.0, "alpha_travel": None}))  # frozen α: the negative control
    for name, kwargs in cases:
        for seed in SEEDS:
            choice, start, history = search_planted(name, seed, **kwargs)
            rows.append({"strategy": name, "setting": ", ".join(f"{k}={v}" for k, v in kwargs.items()),
                         "seed": seed, "exported": choice, "p(sees) start": round(start, 3),
                         "p(sees) per epoch": [round(p, 3) for p in history],
                         "found": is_found(choice, start, history)})
    table = pd.DataFrame(rows)
    counts = table.groupby(["strategy", "setting"], sort=False)["found"].sum().reset_index()
    notes = ("Found = exported `sees`, p(sees) up by ≥ 0.3, never down by more than 0.05. Seeds found of 5:\n\n"
             + counts.to_markdown(index=False) + "\n")
    print(save_table(table, args.out, "Planted-space search", "benchmarks.planted_search", argv, notes,
                     made_at=made_at))
    return 0


if __name__ == "__main__":
    sys.exit(main())
