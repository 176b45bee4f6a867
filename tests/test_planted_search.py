"""A search must find the planted candidate: a tiny generic space in which one candidate of a cell is the only one
that can see the signal. With the shipped α policy, the one-level strategy (and NNI's DARTS and ProxylessNAS on
the same policy) export it in at least 4 of 5 seeds, and its probability rises by at least 0.3; with α frozen
(learning rate 0) the same check fails, so it cannot pass by the seed alone."""

from __future__ import annotations

import warnings

import nni
import pytest
import torch
import torch.nn.functional as F
from nni.nas.evaluator.pytorch import DataLoader, Lightning, LightningModule, Trainer
from nni.nas.execution import SequentialExecutionEngine
from nni.nas.nn.pytorch import LayerChoice, ModelSpace
from nni.nas.space import RawFormatModelSpace
from pytorch_lightning.callbacks import Callback
from torch import nn
from torch.utils.data import TensorDataset

from strategies import DEFAULT_ALPHA_INIT_STD, DEFAULT_ALPHA_TRAVEL, make_strategy

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


def _search(name: str, seed: int, **strategy_kwargs) -> tuple[str, float, list[float]]:
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


def _found(name: str, **strategy_kwargs) -> list[bool]:
    """Per seed: the planted candidate exported, its probability up by ≥ 0.3 and never down by more than 0.05."""
    found = []
    for seed in SEEDS:
        choice, start, history = _search(name, seed, **strategy_kwargs)
        path = [start, *history]
        monotone = all(b >= a - 0.05 for a, b in zip(path, path[1:], strict=False))
        found.append(choice == "sees" and history[-1] - start >= 0.3 and monotone)
    return found


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Measured with the shipped travel of 12 logits: one-level and DARTS 5 of 5 seeds; ProxylessNAS 4 of 5 (seed 3 exports
# 'sees' but its probability first dips by 0.17: its one-path gradient estimate is noisy). At travel 4 ProxylessNAS
# found it in 3 of 5 (seed 2 exported noise_only).
@pytest.mark.parametrize("name", ["avnas", "darts", "proxyless"])
def test_search_finds_the_planted_candidate(name):
    found = _found(name)  # the shipped defaults: budget α policy
    assert sum(found) >= 4, f"{name}: planted candidate found in {sum(found)} of {len(SEEDS)} seeds: {found}"


def test_frozen_alpha_does_not_find_it():
    """The same check with α's learning rate 0: α stays at its seeded start, so the check must fail."""
    found = _found("avnas", arc_learning_rate=0.0, alpha_travel=None)
    assert sum(found) < 4
    assert not any(found)  # nothing moved: no probability rose by 0.3


def test_shipped_defaults_are_the_budget_policy():
    strategy = make_strategy("avnas", seed=0)
    assert (strategy.alpha_init_std, strategy.alpha_travel) == (DEFAULT_ALPHA_INIT_STD, DEFAULT_ALPHA_TRAVEL)
