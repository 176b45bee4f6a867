"""NNI's two-level DARTS as a baseline (paper Table 2): unchanged search, plus validation every epoch.

NNI's :class:`~nni.nas.strategy.DARTS` is first-order two-level DARTS: each training step takes an α step on
a validation batch, then a W step on a training batch (NNI pairs the loaders in a Lightning
``CombinedLoader`` in ``max_size_cycle`` mode, so the shorter loader, usually the validation one, restarts
when exhausted). NNI gives it no validation loader, so a supernet never reports a validation metric; this
subclass hands Lightning the validation loader too and forwards the validation hooks NNI drops, so the
evaluator's epoch metric (e.g. ``val_mAP``) is logged every epoch. Nothing else of the search changes.
As in NNI, the α step calls the evaluator's ``training_step`` on the validation batch, so a training loss
it logs averages training and validation batches.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from nni.nas.oneshot.pytorch.differentiable import DartsLightningModule
from nni.nas.oneshot.pytorch.strategy import DARTS

from ._hooks import OrderedArchParametersMixin, ValidationForwardingMixin

__all__ = ["DartsBaseline", "DartsValidatingModule", "ArgmaxExportMixin"]

logger = logging.getLogger(__name__)


class ArgmaxExportMixin:
    """``export()`` = argmax of ``export_probs()`` per choice; ``export_probs()`` as plain floats.

    For one-shot strategies whose module exposes ``export_probs()`` (α-based: DARTS, Proxyless).
    """

    def export_probs(self) -> dict[str, dict[str, float]]:
        """Probability of every candidate of every choice (softmax of α), as plain floats."""
        return {label: {name: float(p) for name, p in probs.items()}
                for label, probs in self.oneshot_module.export_probs().items()}

    def export(self) -> dict[str, Any]:
        """The most likely candidate of every choice (ties: the first listed)."""
        return {label: max(probs, key=probs.__getitem__) for label, probs in self.export_probs().items()}


class DartsValidatingModule(OrderedArchParametersMixin, ValidationForwardingMixin, DartsLightningModule):
    """NNI's DARTS module with validation forwarded (the weighted-sum supernet is what is validated).

    α are listed in module order (NNI lists a set), so a checkpointed α optimizer resumes correctly.
    """


class DartsBaseline(ArgmaxExportMixin, DARTS):
    """NNI's first-order two-level DARTS, validating every epoch; exports the argmax of softmax(α).

    Parameters
    ----------
    arc_learning_rate : float
        Learning rate of NNI's α optimizer (Adam, betas (0.5, 0.999), weight decay 1e-3).
    seed : int or None
        Seeds α's initialisation, N(0, 1e-3²) as in NNI (None: the global torch RNG).
    **kwargs
        Any other :class:`~nni.nas.strategy.DARTS` argument (``gradient_clip_val``, ``warmup_epochs``,
        ``log_prob_every_n_step``, ``penalty``).
    """

    #: Standard deviation of α's initialisation in NNI's DARTS.
    alpha_init_std: float = 1e-3

    def __init__(self, *, arc_learning_rate: float = 3e-4, seed: int | None = None, **kwargs: Any):
        super().__init__(arc_learning_rate=arc_learning_rate, **kwargs)
        self.seed = seed

    def configure_oneshot_module(self, training_module):
        return DartsValidatingModule(training_module, arc_learning_rate=self.arc_learning_rate,
                                     gradient_clip_val=self.gradient_clip_val,
                                     log_prob_every_n_step=self.log_prob_every_n_step,
                                     warmup_epochs=self.warmup_epochs, penalty=self.penalty)

    def mutate_model(self, model):
        mutated = super().mutate_model(model)
        if self.seed is not None:
            reseed_alphas(self._arch_parameters, self.seed, self.alpha_init_std)
        return mutated

    def val_dataloader(self, train_dataloader_fn, val_dataloader_fn):
        # NNI returns None here: no validation epoch, no epoch metric.
        return val_dataloader_fn()


def reseed_alphas(alphas: dict[str, torch.nn.Parameter], seed: int, std: float) -> None:
    """Redraw every α from N(0, std²) with a generator seeded by ``seed``, in label order."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for label in sorted(alphas):
            alphas[label].copy_(torch.randn(alphas[label].shape, generator=generator) * std)
