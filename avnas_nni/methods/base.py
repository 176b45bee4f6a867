"""What a video-hashing method of Table 2 (lines 3–11) is to this project, and the module that trains one.

A method is an :class:`torch.nn.Module` mapping ``(visual (B, m, d), audio (B, m, d))`` to real codes
``(B, q)`` in [−1, 1] — so :func:`avnas_nni.evaluator.encode`, ``sign_codes``, packing, the metrics and the
figures treat it like any network of the AV-NAS space — plus its own loss (:meth:`HashingMethod.training_loss`)
and the training settings its paper uses (:attr:`HashingMethod.paper_settings`).

:class:`MethodModule` trains a method with everything else of the project's evaluator unchanged: the
data held in memory, the per-epoch order and triplets (a pure function of seed and epoch), val mAP@K every
epoch, checkpoints and resume; a method may add its own learning-rate schedule
(:meth:`HashingMethod.lr_scheduler`), build structure from the unlabelled training videos before training
(:meth:`HashingMethod.prepare`) and follow the epoch (:meth:`HashingMethod.start_epoch`). Supervised methods
get the SPEC §3 triplets (anchor, a positive of its class, ``n0`` negatives of distinct other classes);
unsupervised ones get the training videos alone, in a seeded per-epoch order, and never see a label.
"""

from __future__ import annotations

import abc
import logging
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from avnas_nni.data import SPLITS
from avnas_nni.evaluator import SPLIT_IDS, HashingModule, load_split

__all__ = ["HashingMethod", "MethodModule", "step_decay"]

logger = logging.getLogger(__name__)


def step_decay(optimizer: torch.optim.Optimizer, every: int | None, gamma: float,
               floor: float) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The step schedule of the methods' released code: the rate × ``gamma`` every ``every`` epochs, never below
    ``floor`` nor above the starting rate (a start below the floor stays put). None when ``every`` is None."""
    if every is None:
        return None
    start = optimizer.param_groups[0]["lr"]
    least = min(floor / start, 1.0) if start > 0 else 1.0
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: max(gamma ** (epoch // every), least))


class HashingMethod(nn.Module, metaclass=abc.ABCMeta):
    """Base class of a video-hashing method (an expert-designed network with its own loss).

    Subclasses set the class attributes, build their layers in ``__init__`` (every argument a JSON value,
    returned by :meth:`config` so ``arch.json`` can rebuild the network), and implement :meth:`forward`
    and :meth:`training_loss`.

    Attributes
    ----------
    name : str
        Registry name (``avhash``); the run's ``arch.json`` records it.
    citation : str
        Authors, title, venue, year of the method's paper.
    supervised : bool
        True: :meth:`training_loss` gets triplet rows ``(B, 2 + n0, m, d)`` built from the labels (SPEC §3).
        False: it gets unlabelled training videos ``(B, m, d)``.
    paper_settings : dict
        :class:`~avnas_nni.pipeline.RunSettings` fields of the method's paper (optimiser, batch, epochs, τ,
        negatives); the Table 2 runner's ``paper`` profile uses them for this method's row.
    """

    name: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    supervised: ClassVar[bool] = True
    paper_settings: ClassVar[dict[str, Any]] = {}

    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """The constructor arguments of this network (saved in ``arch.json``)."""

    @abc.abstractmethod
    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Real-valued codes ``(B, q)`` in [−1, 1] of features ``(B, m, d)``; ``sign`` gives the hash codes."""

    @abc.abstractmethod
    def training_loss(self, visual: torch.Tensor, audio: torch.Tensor, *, tau: float) -> torch.Tensor:
        """The method's loss of one batch (shapes: see :attr:`supervised`); ``tau`` is the run's temperature."""

    def lr_scheduler(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler | None:
        """The method's per-epoch learning-rate schedule of the run's Adam ``optimizer``; None (default): constant."""
        return None

    def prepare(self, visual: torch.Tensor, audio: torch.Tensor, *, seed: int) -> None:
        """Called by :class:`MethodModule` before its first training step (a resumed run's too) with the whole
        training split's features ``(n, m, d)`` — never its labels — and the run's seed, for a method whose loss
        needs dataset-wide structure (clusters, a neighbourhood graph). Default: nothing."""

    def start_epoch(self, epoch: int) -> None:
        """Called by :class:`MethodModule` at the start of every training epoch (0-based). Default: nothing."""


class MethodModule(HashingModule):
    """The project's evaluator (:class:`~avnas_nni.evaluator.HashingModule`) with the method's own loss.

    Same constructor arguments; ``set_model`` must receive a :class:`HashingMethod`.
    """

    #: ``id`` of the model :meth:`HashingMethod.prepare` was last called for (None: not yet).
    _prepared_model: int | None = None

    def triplet_loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The method's loss on this batch: its triplets (supervised) or its videos (unsupervised)."""
        model = self.model
        if not isinstance(model, HashingMethod):
            raise TypeError(f"MethodModule trains a HashingMethod, got {type(model).__name__}")
        split_ids, positions = batch
        split = SPLITS[int(split_ids[0])]
        visual, audio, _ = load_split(self.data, split)
        if self._prepared_model != id(model):  # once per model: the training videos, never their labels
            model.prepare(visual, audio, seed=self.seed)
            self._prepared_model = id(model)
        if model.supervised:
            order, triplets = self._epoch_plan(split)
            index = torch.from_numpy(triplets[order[positions.cpu().numpy()]])  # (B, 2 + n0)
        else:  # the videos alone: no sampler, no labels
            order = np.random.default_rng([self.seed, SPLIT_IDS[split], self.current_epoch, 1]).permutation(
                len(visual))
            index = torch.from_numpy(order[positions.cpu().numpy()])  # (B,)
        return model.training_loss(visual[index].to(self.device), audio[index].to(self.device), tau=self.tau)

    def on_train_epoch_start(self) -> None:
        """Tells the method the epoch (:meth:`HashingMethod.start_epoch`)."""
        if isinstance(self.model, HashingMethod):
            self.model.start_epoch(self.current_epoch)

    def configure_optimizers(self):
        """The evaluator's Adam, stepped per epoch by the method's :meth:`HashingMethod.lr_scheduler` if it has one."""
        optimizer = super().configure_optimizers()
        scheduler = self.model.lr_scheduler(optimizer) if isinstance(self.model, HashingMethod) else None
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
