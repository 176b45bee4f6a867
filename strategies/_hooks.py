"""What NNI 3.0's one-shot Lightning modules leave out, added back by mixins our strategies share.

NNI forwards ``on_validation_start/end`` to the evaluator's module but not the epoch-level hooks, and
the differentiable modules define no ``validation_step``: without these, a supernet never reports
``val_mAP`` (NNI-NOTES, "Pitfalls").
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch

__all__ = ["ValidationForwardingMixin", "BestEpochMixin", "OrderedArchParametersMixin"]

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
