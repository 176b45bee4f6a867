"""NNI's ProxylessNAS as a baseline (paper Table 2): argmax export and validation every epoch.

NNI's :class:`~nni.nas.strategy.Proxyless` trains like two-level DARTS, but every forward runs one path
sampled from softmax(α) and α's gradient comes from ProxylessNAS's binary-gate estimate. NNI's ``export()``
*samples* a path; this subclass exports the argmax of softmax(α) instead, and validates every epoch on
that argmax path (NNI gives Proxyless no validation loader). Limitations are NNI's: candidates are called
with positional tensors only and must all return tensors of the same shape.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from nni.nas.oneshot.pytorch.differentiable import DartsLightningModule
from nni.nas.oneshot.pytorch.strategy import Proxyless

from ._hooks import (
    AlphaBudgetMixin,
    BestEpochMixin,
    OrderedArchParametersMixin,
    SeededDifferentiableMixin,
    step_seed,
)

__all__ = ["ProxylessBaseline", "ProxylessValidatingModule"]

logger = logging.getLogger(__name__)


class ProxylessValidatingModule(OrderedArchParametersMixin, AlphaBudgetMixin, BestEpochMixin, DartsLightningModule):
    """NNI's Proxyless module (its training step is DARTS's) validating the argmax path of softmax(α).

    With ``sampling_seed`` set, the global torch RNG that NNI's path sampling draws from is reseeded from
    (seed, epoch, batch) before every training step, so a resumed run samples the paths it would have.
    """

    sampling_seed: int | None = None

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        if self.sampling_seed is not None:
            torch.manual_seed(step_seed(self.sampling_seed, self.trainer.current_epoch, batch_idx))
        return super().training_step(batch, batch_idx)

    def argmax_sample(self) -> dict[str, Any]:
        """The most likely candidate of every choice."""
        return {label: max(probs, key=lambda name: float(probs[name])) for label, probs in self.export_probs().items()}

    def on_validation_epoch_start(self) -> None:
        self.fix_path(self.argmax_sample())
        super().on_validation_epoch_start()

    def validation_step(self, batch: Any, batch_idx: int) -> Any:
        # The path was fixed for the whole epoch; the next training step resamples.
        return self.training_module.validation_step(batch, batch_idx)


class ProxylessBaseline(SeededDifferentiableMixin, Proxyless):
    """NNI's ProxylessNAS exporting the **argmax** of softmax(α) (NNI's export samples a path).

    Parameters
    ----------
    arc_learning_rate : float
        Learning rate of NNI's α optimizer (Adam, betas (0.5, 0.999), weight decay 1e-3); with ``alpha_travel``
        the floor of the α-step budget rule (:class:`~strategies._hooks.AlphaBudgetMixin`).
    alpha_init_std, alpha_travel, keep_best, monitor, mode
        As for every α-based strategy (:class:`~strategies._hooks.SeededDifferentiableMixin`).
    seed : int or None
        Seeds α's initialisation, N(0, 1e-3²) as in NNI, and the path sampling of every training step
        (None: both from the global torch RNG).
    **kwargs
        Any other :class:`~nni.nas.strategy.Proxyless` argument.
    """

    module_class = ProxylessValidatingModule

    def configure_oneshot_module(self, training_module):
        module = super().configure_oneshot_module(training_module)
        module.sampling_seed = self.seed
        return module
