"""The one-level strategy on a tiny non-video space: generic, one backward for W and α, best epoch kept."""

from __future__ import annotations

import copy

import nni
import pytest
import torch
from nni.nas.evaluator.pytorch import DataLoader, Lightning, LightningModule, Trainer
from nni.nas.experiment import NasExperiment
from nni.nas.nn.pytorch import LayerChoice, ModelSpace
from torch import nn
from torch.utils.data import TensorDataset

from strategies import OneLevel, TopTwoSum, prune


class TinySpace(ModelSpace):
    """Regression space: two cells, each a choice of three layers."""

    def __init__(self):
        super().__init__()
        self.first = LayerChoice({"linear": nn.Linear(4, 4), "relu_linear": nn.Sequential(nn.ReLU(), nn.Linear(4, 4)),
                                  "skip": nn.Identity()}, label="first")
        self.second = LayerChoice({"linear": nn.Linear(4, 1), "tanh_linear": nn.Sequential(nn.Tanh(), nn.Linear(4, 1))},
                                  label="second")

    def forward(self, x):
        return self.second(self.first(x))


@nni.trace
class Regression(LightningModule):
    """MSE regression; logs a scripted validation score per epoch when ``scores`` is given."""

    def __init__(self, lr: float = 0.01, scores: list[float] | None = None):
        super().__init__()
        self.lr, self.scores = lr, scores
        self.validated_epochs: list[int] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.model(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.model(x), y))

    def on_validation_epoch_end(self):
        if self.trainer.sanity_checking:
            return
        self.validated_epochs.append(self.current_epoch)
        if self.scores is not None:
            self.log("score", self.scores[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.lr)


@nni.trace
class RegressionData(TensorDataset):
    """n points of a fixed regression target, drawn from ``seed`` (a traced class: tracing a function that
    returns a ``TensorDataset`` would make NNI patch ``TensorDataset`` itself, for every other test too)."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 4, generator=g)
        super().__init__(x, (x[:, :1] * 2 - x[:, 1:2]).tanh())


def _dataset(n: int, seed: int) -> TensorDataset:
    return RegressionData(n, seed)


def _evaluator(epochs: int = 1, **module_kwargs) -> Lightning:
    return Lightning(Regression(**module_kwargs),
                     Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, num_sanity_val_steps=0),
                     train_dataloaders=DataLoader(_dataset(64, 0), batch_size=16),
                     val_dataloaders=DataLoader(_dataset(32, 1), batch_size=16))


def _run(space, evaluator, strategy, workdir) -> None:
    """Run an NNI experiment the ordinary way, with its files under the test's directory."""
    experiment = NasExperiment(space, evaluator, strategy)
    experiment.config.experiment_working_directory = str(workdir)
    try:
        experiment.run()
    finally:
        experiment.stop()


def test_one_step_moves_w_and_alpha_from_the_same_training_loss():
    torch.manual_seed(0)
    strategy = OneLevel(seed=0, arc_learning_rate=0.05, alpha_travel=None)
    supernet = strategy.mutate_model(TinySpace())
    module = Regression(lr=0.01)
    module.set_model(supernet)
    oneshot = strategy.configure_oneshot_module(module)
    before = copy.deepcopy(supernet)
    x, y = next(iter(torch.utils.data.DataLoader(_dataset(64, 0), batch_size=16)))
    # Expected gradients: the training loss of this very batch, through the supernet before the step.
    nn.functional.mse_loss(before(x), y).backward()
    grads = {name: p.grad.clone() for name, p in before.named_parameters() if p.grad is not None}

    trainer = Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(oneshot, torch.utils.data.DataLoader(_dataset(64, 0), batch_size=16))

    after = dict(supernet.named_parameters())
    alphas = [n for n in after if "_arch_alpha" in n]
    weights = [n for n in after if "_arch_alpha" not in n and n in grads and grads[n].abs().sum() > 0]
    assert alphas and weights
    for name, lr in [(n, 0.05) for n in alphas] + [(n, 0.01) for n in weights]:
        step = after[name].detach() - dict(before.named_parameters())[name].detach()
        # Adam's first step is −lr·g/(|g|+eps): sign(−g) times lr, wherever the gradient is not ~0.
        mask = grads[name].abs() > 1e-6
        assert mask.any(), name
        torch.testing.assert_close(step[mask], -lr * grads[name][mask].sign(), atol=1e-4, rtol=1e-3)


def test_runs_as_an_ordinary_nni_strategy_on_a_non_video_space(tmp_path):
    torch.manual_seed(0)
    strategy = OneLevel(seed=1, monitor="val_loss", mode="min")
    evaluator = _evaluator(epochs=2)
    _run(TinySpace(), evaluator, strategy, tmp_path)
    sample = strategy.export()
    assert set(sample) == {"first", "second"}
    assert sample["first"] in ("linear", "relu_linear", "skip") and sample["second"] in ("linear", "tanh_linear")
    probs = strategy.export_probs()
    assert probs["first"][sample["first"]] == max(probs["first"].values())
    assert abs(sum(probs["second"].values()) - 1) < 1e-6
    assert strategy.oneshot_module.training_module.validated_epochs == [0, 1]  # validated every epoch
    net = prune(copy.deepcopy(strategy.supernet), sample)
    assert not any(isinstance(m, LayerChoice) for m in net.modules())
    assert net(torch.randn(3, 4)).shape == (3, 1)


def test_best_epoch_state_is_restored_at_the_end(tmp_path):
    torch.manual_seed(0)
    strategy = OneLevel(seed=2, monitor="score", mode="max")
    snapshots = []

    class Snapshot(nni.nas.evaluator.pytorch.lightning.pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            snapshots.append(copy.deepcopy(pl_module.training_module.model.state_dict()))

    evaluator = _evaluator(epochs=3, scores=[0.2, 0.9, 0.5])
    evaluator.trainer.callbacks.append(Snapshot())
    _run(TinySpace(), evaluator, strategy, tmp_path)
    assert strategy.oneshot_module.best_epoch == 1
    final = strategy.supernet.state_dict()
    for key, value in snapshots[1].items():
        torch.testing.assert_close(final[key], value)
    assert any(not torch.equal(final[k], v) for k, v in snapshots[2].items())


def test_alpha_initialisation_is_seeded_normal():
    a = OneLevel(seed=5, alpha_init_std=1.0)
    a.mutate_model(TinySpace())
    b = OneLevel(seed=5, alpha_init_std=1.0)
    b.mutate_model(TinySpace())
    for label in a._arch_parameters:
        torch.testing.assert_close(a._arch_parameters[label], b._arch_parameters[label])
    values = torch.cat([p.detach() for p in a._arch_parameters.values()])
    assert values.abs().max() > 0.05  # N(0, 1), not NNI's N(0, 1e-6)


def test_top2_export_and_pruning_sum_two_candidates(tmp_path):
    torch.manual_seed(0)
    strategy = OneLevel(seed=0)
    evaluator = _evaluator(epochs=1)
    _run(TinySpace(), evaluator, strategy, tmp_path)
    with torch.no_grad():  # p(first) ∝ exp([2, 1.5, -3]): p1/p2 = e^0.5 ≤ 3 → keep two; second: e^3 > 3 → one
        strategy._arch_parameters["first"].copy_(torch.tensor([2.0, 1.5, -3.0]))
        strategy._arch_parameters["second"].copy_(torch.tensor([-1.0, 2.0]))
    sample = strategy.export_top2(ratio=3.0)
    assert sample == {"first": ["linear", "relu_linear"], "second": "tanh_linear"}
    assert strategy.export_top2(ratio=3.0, labels=lambda label: label != "first")["first"] == "linear"
    supernet = copy.deepcopy(strategy.supernet)
    first_linear = copy.deepcopy(supernet.first["linear"])
    first_relu = copy.deepcopy(supernet.first["relu_linear"])
    net = prune(supernet, sample)
    assert isinstance(net.first, TopTwoSum)
    x = torch.randn(5, 4)
    torch.testing.assert_close(net.first(x), first_linear(x) + first_relu(x))


def test_prune_errors_name_the_cell():
    with pytest.raises(ValueError, match="missing choice for cell 'second'"):
        prune(TinySpace(), {"first": "linear"})
    with pytest.raises(ValueError, match="cell 'first' has no candidate 'conv'"):
        prune(TinySpace(), {"first": "conv", "second": "linear"})
