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

from nni.nas.oneshot.pytorch.differentiable import DartsLightningModule
from nni.nas.oneshot.pytorch.strategy import DARTS

from ._hooks import AlphaBudgetMixin, BestEpochMixin, OrderedArchParametersMixin, SeededDifferentiableMixin

__all__ = ["DartsBaseline", "DartsValidatingModule"]

logger = logging.getLogger(__name__)


class DartsValidatingModule(OrderedArchParametersMixin, AlphaBudgetMixin, BestEpochMixin, DartsLightningModule):
    """NNI's DARTS module with validation forwarded (the weighted-sum supernet is what is validated), the
    α-step budget and best-epoch selection shared with the one-level strategy.

    α are listed in module order (NNI lists a set), so a checkpointed α optimizer resumes correctly.
    """


class DartsBaseline(SeededDifferentiableMixin, DARTS):
    """NNI's first-order two-level DARTS, validating every epoch; exports the argmax of softmax(α).

    Parameters
    ----------
    arc_learning_rate : float
        Learning rate of NNI's α optimizer (Adam, betas (0.5, 0.999), weight decay 1e-3); with ``alpha_travel``
        the floor of the α-step budget rule (:class:`~strategies._hooks.AlphaBudgetMixin`).
    alpha_init_std, alpha_travel, keep_best, monitor, mode, seed
        As for every α-based strategy (:class:`~strategies._hooks.SeededDifferentiableMixin`); α starts at
        N(0, 1e-3²) as in NNI.
    **kwargs
        Any other :class:`~nni.nas.strategy.DARTS` argument (``gradient_clip_val``, ``warmup_epochs``,
        ``log_prob_every_n_step``, ``penalty``).
    """

    module_class = DartsValidatingModule
