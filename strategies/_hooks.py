"""What NNI 3.0's one-shot Lightning modules leave out, added back by mixins our strategies share.

NNI forwards ``on_validation_start/end`` to the evaluator's module but not the epoch-level hooks, and
the differentiable modules define no ``validation_step``: without these, a supernet never reports
``val_mAP`` (NNI-NOTES, "Pitfalls").
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping
from typing import Any

import torch
from nni.nas.oneshot.pytorch.supermodule.base import BaseSuperNetModule
from nni.nas.oneshot.pytorch.supermodule.differentiable import DifferentiableMixedLayer

from .diagnostics import argmax
from .mixed_layer import FusedMixedLayer

__all__ = ["ValidationForwardingMixin", "BestEpochMixin", "OrderedArchParametersMixin", "ArgmaxExportMixin",
           "AlphaBudgetMixin", "SeededDifferentiableMixin", "alpha_steps", "reseed_alphas", "step_seed",
           "DEFAULT_ALPHA_TRAVEL", "DEFAULT_ALPHA_INIT_STD"]

#: Default α policy of the α-based strategies (one-level, DARTS, ProxylessNAS): α starts at N(0, 1e-3²), so
#: every candidate starts equal and the seed does not pick the architecture, and α's learning rate is at
#: least ``travel / α steps``, so however short the run, α can move ``travel`` logits. 12, not 4: on the embedded
#: data (quick profile, seeds 3346 and 1) travel 4 left 8 of 22 cells undecided (top two within 0.02) in both
#: runs, travel 12 left 1 and 3 (docs/search.md).
DEFAULT_ALPHA_INIT_STD = 1e-3
DEFAULT_ALPHA_TRAVEL = 12.0

logger = logging.getLogger(__name__)


class OrderedArchParametersMixin:
    """Architecture parameters in module order.

    NNI's ``DartsLightningModule.arch_parameters`` returns ``list(set(...))``, whose order changes from one
    process to the next, so an optimizer state saved in a checkpoint no longer matches on resume.
    """

    def arch_parameters(self) -> list[torch.nn.Parameter]:
        seen: dict[int, torch.nn.Parameter] = {}
        for module in self.supernet_modules():
            for param in getattr(module, "arch_parameters", lambda: [])():
                seen.setdefault(id(param), param)
        return list(seen.values())


def alpha_steps(trainer: Any, warmup_epochs: int = 0) -> int | None:
    """How many α steps a fit will take: the trainer's estimated optimizer steps, less the warm-up epochs'.

    None when Lightning cannot tell (an iterable without a length).
    """
    total = trainer.estimated_stepping_batches
    if not math.isfinite(total):
        return None
    if not trainer.max_epochs or trainer.max_epochs < 1:  # a step-limited fit
        return int(total) if warmup_epochs == 0 else None
    searching = max(trainer.max_epochs - warmup_epochs, 0) / trainer.max_epochs
    return int(total * searching)


class AlphaBudgetMixin:
    """α's learning rate scaled to the run's α-step budget, for NNI's α-based Lightning modules.

    With ``alpha_travel`` set, the architecture optimizer's learning rate becomes
    ``max(arc_learning_rate, alpha_travel / α steps)``: Adam moves a parameter by about its learning rate per
    step when the gradient's sign holds, so α can travel ``alpha_travel`` logits within the run. The paper's
    settings (Adam 1e-3 over ~23,000 α steps) leave room for ~23 logits; a few epochs at 1e-3 leave ~0.1, too
    little to leave the initialisation. ``effective_arc_lr`` records the rate used.
    """

    alpha_travel: float | None = None
    effective_arc_lr: float | None = None

    def configure_architecture_optimizers(self):
        return self.apply_alpha_budget(super().configure_architecture_optimizers())

    def apply_alpha_budget(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """Set ``optimizer``'s learning rate by the budget rule (no change without ``alpha_travel``)."""
        lr = self.arc_learning_rate
        if self.alpha_travel is not None:
            steps = alpha_steps(self.trainer, self.warmup_epochs)
            if steps is None:
                logger.warning("α policy: the number of α steps is unknown; α keeps learning rate %g", lr)
            elif steps > 0:
                lr = max(lr, self.alpha_travel / steps)
                logger.info("α policy: %d α steps, learning rate %.4g (travel %g logits)", steps, lr,
                            self.alpha_travel)
            for group in optimizer.param_groups:
                group["lr"] = lr
        self.effective_arc_lr = lr
        return optimizer


class ValidationForwardingMixin:
    """Forward ``validation_step`` and the validation-epoch hooks to ``self.training_module``."""

    def fix_path(self, sample: Mapping[str, Any]) -> None:
        """Make every single-path supernet layer run the candidates ``sample`` names (until the next resample)."""
        for module in self.supernet_modules():
            module.resample(memo=dict(sample))

    def validation_step(self, batch: Any, batch_idx: int) -> Any:
        self.resample()
        return self.training_module.validation_step(batch, batch_idx)

    def on_validation_epoch_start(self) -> None:
        self.training_module.on_validation_epoch_start()

    def on_validation_epoch_end(self) -> None:
        self.training_module.on_validation_epoch_end()


class BestEpochMixin(ValidationForwardingMixin):
    """Keep the supernet state (weights and architecture parameters) of the best validation epoch.

    After each validation epoch the logged ``monitor`` metric is compared with the best so far; with
    ``keep_best`` the best state is copied (on CPU) and put back into the supernet when fitting ends, so the
    strategy exports α* and hands W* to fine-tuning (paper §4.3, step 1). Without it the last epoch's
    supernet is kept (the best epoch is still recorded).
    """

    monitor: str = "val_mAP"
    mode: str = "max"
    keep_best: bool = True

    def _init_best(self, monitor: str, mode: str, keep_best: bool = True) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode: expected 'max' or 'min', got {mode!r}")
        self.monitor, self.mode, self.keep_best = monitor, mode, keep_best
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self._best_state: dict[str, torch.Tensor] | None = None

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.trainer.sanity_checking:
            return
        value = self.trainer.callback_metrics.get(self.monitor)
        if value is None:
            logger.warning("metric %r was not logged; keeping the last epoch's supernet", self.monitor)
            return
        score = float(value)
        better = self.best_score is None or (score > self.best_score if self.mode == "max" else score < self.best_score)
        if better:
            self.best_score, self.best_epoch = score, self.trainer.current_epoch
            if self.keep_best:
                self._best_state = {k: v.detach().to("cpu", copy=True)
                                    for k, v in self.training_module.model.state_dict().items()}
            logger.info("epoch %d: %s = %.4f (best so far)", self.best_epoch, self.monitor, score)

    def restore_best(self) -> bool:
        """Load the best epoch's state into the supernet; False when none was kept."""
        if self._best_state is None:
            return False
        self.training_module.model.load_state_dict(copy.deepcopy(self._best_state))
        return True

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["best_epoch_state"] = {"score": self.best_score, "epoch": self.best_epoch, "state": self._best_state}
        self.training_module.on_save_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        best = checkpoint.get("best_epoch_state") or {}
        self.best_score, self.best_epoch, self._best_state = best.get("score"), best.get("epoch"), best.get("state")
        self.training_module.on_load_checkpoint(checkpoint)

    def on_fit_end(self) -> None:
        if self.restore_best():
            logger.info("restored the supernet of epoch %d (%s = %.4f)", self.best_epoch, self.monitor,
                        self.best_score)
        super().on_fit_end()


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
        return {label: argmax(probs) for label, probs in self.export_probs().items()}


class SeededDifferentiableMixin(ArgmaxExportMixin):
    """For α-based strategies: seeded α initialisation, the α-step budget, the initial probabilities, validation
    every epoch, argmax export.

    Subclasses name their Lightning module in ``module_class`` (built with DARTS's arguments; it must include
    :class:`AlphaBudgetMixin` and :class:`BestEpochMixin`).

    Parameters
    ----------
    arc_learning_rate : float
        α's learning rate (the floor of the budget rule when ``alpha_travel`` is set).
    alpha_init_std : float
        α is drawn from N(0, std²) in label order with a generator seeded by ``seed``.
    alpha_travel : float or None
        Scale α's learning rate to the run (:class:`AlphaBudgetMixin`); None keeps ``arc_learning_rate``.
    keep_best : bool
        Export α* and hand on W* of the best validation epoch by ``monitor`` (paper §4.3, step 1), else the
        last epoch's.
    monitor, mode : str
        The logged validation metric that picks the best epoch, and whether higher is better.
    seed : int or None
        Seeds α's initialisation (None: a draw from the global torch RNG).
    """

    module_class: type

    def __init__(self, *, arc_learning_rate: float = 3e-4, alpha_init_std: float = DEFAULT_ALPHA_INIT_STD,
                 alpha_travel: float | None = DEFAULT_ALPHA_TRAVEL, keep_best: bool = True,
                 monitor: str = "val_mAP", mode: str = "max", seed: int | None = None, **kwargs: Any):
        super().__init__(arc_learning_rate=arc_learning_rate, **kwargs)
        if mode not in ("max", "min"):
            raise ValueError(f"mode: expected 'max' or 'min', got {mode!r}")
        self.keep_best, self.monitor, self.mode = keep_best, monitor, mode
        if alpha_init_std < 0 or (alpha_travel is not None and alpha_travel <= 0):
            raise ValueError(f"alpha_init_std must be ≥ 0 and alpha_travel > 0 or None, got {alpha_init_std!r}, "
                             f"{alpha_travel!r}")
        self.seed, self.alpha_init_std, self.alpha_travel = seed, alpha_init_std, alpha_travel
        self.init_probs: dict[str, dict[str, float]] | None = None

    def configure_oneshot_module(self, training_module):
        module = self.module_class(training_module, **self._module_kwargs())
        module.alpha_travel = self.alpha_travel
        module._init_best(self.monitor, self.mode, self.keep_best)
        return module

    def _module_kwargs(self) -> dict[str, Any]:
        return dict(arc_learning_rate=self.arc_learning_rate, gradient_clip_val=self.gradient_clip_val,
                    log_prob_every_n_step=self.log_prob_every_n_step, warmup_epochs=self.warmup_epochs,
                    penalty=getattr(self, "penalty", None))

    def default_mutation_hooks(self):
        # NNI's mixed layer with its weighted sum in place (same results), for every α strategy that uses it
        return [FusedMixedLayer.mutate if hook == DifferentiableMixedLayer.mutate else hook
                for hook in super().default_mutation_hooks()]

    def mutate_model(self, model):
        mutated = super().mutate_model(model)
        seed = self.seed if self.seed is not None else int(torch.randint(2**31 - 1, ()))
        reseed_alphas(self._arch_parameters, seed, self.alpha_init_std)
        # softmax(α) before the first step: what a search that learnt nothing would export
        self.init_probs = _supernet_probs(mutated)
        return mutated

    def val_dataloader(self, train_dataloader_fn, val_dataloader_fn):
        # NNI returns None here: no validation epoch, no epoch metric.
        return val_dataloader_fn()


def _supernet_probs(model: torch.nn.Module) -> dict[str, dict[str, float]]:
    """softmax(α) per label as NNI's mixed layers export it (``export_probs``, what the one-shot module reports at
    the end), as plain floats with str keys, in label order."""
    memo: dict[str, Any] = {}
    for module in model.modules():
        if isinstance(module, BaseSuperNetModule):
            memo.update(module.export_probs(memo))
    return {str(label): {str(name): float(p) for name, p in probs.items()} for label, probs in sorted(memo.items())}


def reseed_alphas(alphas: dict[str, torch.nn.Parameter], seed: int, std: float) -> None:
    """Redraw every α from N(0, std²) with a generator seeded by ``seed``, in label order."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for label in sorted(alphas):
            alphas[label].copy_(torch.randn(alphas[label].shape, generator=generator) * std)


def step_seed(seed: int, epoch: int, batch_idx: int) -> int:
    """A seed that depends only on (seed, epoch, batch): reseeding with it makes a resumed run repeat its draws."""
    return (seed * 1_000_003 + epoch) * 1_000_003 + batch_idx
