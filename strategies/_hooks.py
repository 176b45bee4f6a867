"""What NNI 3.0's one-shot Lightning modules leave out, added back by mixins our strategies share.

NNI forwards ``on_validation_start/end`` to the evaluator's module but not the epoch-level hooks, and
the differentiable modules define no ``validation_step``: without these, a supernet never reports
``val_mAP`` (NNI-NOTES, "Pitfalls").
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["ValidationForwardingMixin", "BestEpochMixin", "OrderedArchParametersMixin", "ArgmaxExportMixin",
           "SeededDifferentiableMixin", "reseed_alphas", "step_seed"]

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

    After each validation epoch the logged ``monitor`` metric is compared with the best so far; the
    best state is copied (on CPU) and put back into the supernet when fitting ends, so the strategy
    exports α* and hands W* to fine-tuning (paper §4.3, step 1).
    """

    monitor: str = "val_mAP"
    mode: str = "max"

    def _init_best(self, monitor: str, mode: str) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode: expected 'max' or 'min', got {mode!r}")
        self.monitor, self.mode = monitor, mode
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
            self._best_state = {k: v.detach().to("cpu", copy=True)
                                for k, v in self.training_module.model.state_dict().items()}
            logger.info("epoch %d: %s = %.4f (best so far)", self.best_epoch, self.monitor, score)

    def restore_best(self) -> bool:
        """Load the best epoch's state into the supernet; False when no epoch was validated."""
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
        return {label: max(probs, key=probs.__getitem__) for label, probs in self.export_probs().items()}


class SeededDifferentiableMixin(ArgmaxExportMixin):
    """For NNI's α-based strategies: seeded α initialisation, validation every epoch, argmax export.

    Subclasses name their Lightning module in ``module_class`` (built with DARTS's arguments) and the
    standard deviation of α's initial N(0, std²) in ``alpha_init_std``.
    """

    module_class: type
    alpha_init_std: float = 1e-3

    def __init__(self, *, arc_learning_rate: float = 3e-4, seed: int | None = None, **kwargs: Any):
        super().__init__(arc_learning_rate=arc_learning_rate, **kwargs)
        self.seed = seed

    def configure_oneshot_module(self, training_module):
        return self.module_class(training_module, **self._module_kwargs())

    def _module_kwargs(self) -> dict[str, Any]:
        return dict(arc_learning_rate=self.arc_learning_rate, gradient_clip_val=self.gradient_clip_val,
                    log_prob_every_n_step=self.log_prob_every_n_step, warmup_epochs=self.warmup_epochs,
                    penalty=self.penalty)

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


def step_seed(seed: int, epoch: int, batch_idx: int) -> int:
    """A seed that depends only on (seed, epoch, batch): reseeding with it makes a resumed run repeat its draws."""
    return (seed * 1_000_003 + epoch) * 1_000_003 + batch_idx
