"""AV-NAS's one-level "coarse search – pruning – fine-tuning" strategy (paper §4.3) on NNI's DARTS machinery.

Every ``LayerChoice`` becomes a softmax(α)-weighted mixture (NNI's ``DifferentiableMixedLayer``). Unlike
NNI's two-level DARTS, the network weights W and the architecture α are stepped **together, on the same
training loss, every mini-batch**; there is no train/val split for α. After every epoch the evaluator's
validation metric is read and the best (W*, α*) is kept and restored at the end. Pruning keeps the
argmax of softmax(α*) per cell (Arch-1), or, as the authors' code offers, the top two candidates of the
chosen cells when p1/p2 ≤ ``top2_ratio`` (Arch-2). Fine-tuning starts from W* and is done by whoever
trains the pruned network (the evaluator), as for every other strategy.

α's policy. The paper's code draws α from N(0, 1) and steps it with Adam at 1e-3 for 300 epochs (~23,000
steps: room for ~23 logits of travel). In a run of a few epochs the same settings move softmax(α) by less
than 0.01 and the export is the argmax of the seeded initialisation: the seed, not the data, picks the
network. The defaults here therefore start every candidate equal (N(0, 1e-3²), as NNI's DARTS) and give α a
learning rate of ``max(arc_learning_rate, alpha_travel / α steps)`` (:class:`~strategies._hooks.AlphaBudgetMixin`),
so that α can travel ``alpha_travel`` logits whatever the budget. ``alpha_init_std=1.0, alpha_travel=None``
restores the paper's settings (the ``paper`` profile of :mod:`avnas_nni.pipeline` does).

The strategy knows nothing of video hashing: it works on any NNI ``ModelSpace`` built from
``LayerChoice``s with any NNI ``Lightning`` evaluator whose module returns the training loss.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from nni.nas.oneshot.pytorch.differentiable import DartsLightningModule
from nni.nas.oneshot.pytorch.strategy import DARTS

from ._hooks import AlphaBudgetMixin, BestEpochMixin, OrderedArchParametersMixin, SeededDifferentiableMixin

__all__ = ["OneLevel", "OneLevelLightningModule"]

logger = logging.getLogger(__name__)


class OneLevelLightningModule(OrderedArchParametersMixin, AlphaBudgetMixin, BestEpochMixin, DartsLightningModule):
    """One-level search: one backward of the training loss updates W and α in the same step."""

    def __init__(self, training_module, *, arc_learning_rate: float = 1e-3, gradient_clip_val: float | None = None,
                 log_prob_every_n_step: int = 10, warmup_epochs: int = 0, monitor: str = "val_mAP",
                 mode: str = "max", keep_best: bool = True, penalty: Any = None):
        super().__init__(training_module, arc_learning_rate=arc_learning_rate, gradient_clip_val=gradient_clip_val,
                         log_prob_every_n_step=log_prob_every_n_step, warmup_epochs=warmup_epochs, penalty=penalty)
        self._init_best(monitor, mode, keep_best)

    def training_step(self, batch, batch_idx):
        arc_optim = self.architecture_optimizers()
        step_alpha = self.warmup_epochs == 0 or self.trainer.current_epoch >= self.warmup_epochs
        arc_optim.zero_grad()
        output = self.training_module.training_step(batch, batch_idx)
        loss = output["loss"] if isinstance(output, dict) else output
        # zero_grad(W) → backward (fills W's and α's gradients) → clip → step W; then step α on the same gradients
        self.advance_optimization(loss, batch_idx, self.gradient_clip_val)
        if step_alpha:
            arc_optim.step()
        self.advance_lr_schedulers(batch_idx)
        if batch_idx % self.log_prob_every_n_step == 0:
            self.log_probs(self.export_probs())
        return output

    def configure_architecture_optimizers(self):
        params = self.arch_parameters()
        if not params:
            raise ValueError("no LayerChoice found in the model space: nothing to search")
        # Paper/authors: plain Adam on α (NNI's DARTS uses betas (0.5, 0.999) and weight decay 1e-3).
        return self.apply_alpha_budget(torch.optim.Adam(params, lr=self.arc_learning_rate))


class OneLevel(SeededDifferentiableMixin, DARTS):
    """The AV-NAS one-level strategy, usable as any NNI strategy: ``NasExperiment(space, evaluator, OneLevel())``.

    Parameters
    ----------
    arc_learning_rate : float
        Adam learning rate of α (paper code: 1e-3); with ``alpha_travel``, its floor.
    alpha_init_std : float
        α is drawn from N(0, std²) (default 1e-3: every candidate starts equal; paper code: 1.0).
    alpha_travel : float or None
        α's learning rate is at least ``alpha_travel / α steps`` (default 12 logits; None: ``arc_learning_rate``
        as given, the paper's setting).
    keep_best : bool
        Keep (W*, α*) of the best validation epoch (paper §4.3); else the last epoch's.
    monitor, mode : str
        The logged validation metric that picks the best epoch, and whether higher is better.
    gradient_clip_val : float or None
        Clip W's gradients.
    warmup_epochs : int
        Epochs that train W only.
    seed : int or None
        Seeds α's initialisation (None: the global torch RNG).
    """

    module_class = OneLevelLightningModule

    def __init__(self, *, arc_learning_rate: float = 1e-3, **kwargs: Any):
        super().__init__(arc_learning_rate=arc_learning_rate, **kwargs)

    # One level: α trains on the training batches, so no train/val pairing; validate every epoch.
    def train_dataloader(self, train_dataloader_fn, val_dataloader_fn):
        return train_dataloader_fn()

    def export_top2(self, ratio: float = 3.0, labels: Callable[[str], bool] = lambda label: True) -> dict[str, Any]:
        """Arch-2 pruning: for cells selected by ``labels`` whose top two probabilities satisfy p1/p2 ≤ ``ratio``,
        keep both candidates (a list of two names); every other cell keeps its argmax."""
        sample: dict[str, Any] = {}
        for label, probs in self.oneshot_module.export_probs().items():
            ranked = sorted(probs.items(), key=lambda kv: kv[1], reverse=True)
            (first, p1), second = ranked[0], ranked[1] if len(ranked) > 1 else None
            keep_two = second is not None and labels(label) and p1 / max(second[1], 1e-12) <= ratio
            sample[label] = [first, second[0]] if keep_two else first
        return sample
