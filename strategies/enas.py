"""NNI's ENAS as a baseline (paper Table 2), working on pytorch-lightning 2.x.

NNI's :class:`~nni.nas.strategy.ENAS` trains the supernet on paths sampled by an RL controller (PPO over
an LSTM, from tianshou) and rewards the controller with a metric the evaluator logs in ``validation_step``
on validation batches interleaved into training. NNI feeds one loader that yields all training batches,
then all validation batches, and its module tells them apart by unpacking ``(batch, mode)`` (Lightning
1.x) or ``(batch, batch_idx, dataloader_idx)``. Lightning 2 hands the module the bare batch, so any
2-element batch (``(x, y)``, or our ``(split_id, position)``) is misread as ``(batch, mode)`` and training
fails (``Boolean value of Tensor with more than one value is ambiguous``, or, for ``(x, y)``, a
``validation_step`` handed ``x`` alone). This subclass tags every
batch as ``(batch, "train" | "val")`` before it reaches the module, which is exactly the legacy form NNI's
module understands.

Also added: validation every epoch on the controller's most likely architecture, and ``export()`` =
that architecture (greedy decoding: the argmax action at every step of the controller), where NNI exports
one random controller sample.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from nni.nas.oneshot.pytorch.sampling import EnasLightningModule
from nni.nas.oneshot.pytorch.strategy import ENAS

from ._hooks import ValidationForwardingMixin

__all__ = ["EnasBaseline", "EnasTaggedModule", "TaggedLoader"]

logger = logging.getLogger(__name__)

_MODES = ("train", "val")


class TaggedLoader:
    """An iterable over ``(batch, tag)`` for every batch of ``loader``; sized when ``loader`` is."""

    def __init__(self, loader: Iterable, tag: str):
        self.loader, self.tag = loader, tag

    def __iter__(self) -> Iterator[tuple[Any, str]]:
        for batch in self.loader:
            yield batch, self.tag

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]


class _ArgmaxCategorical(torch.distributions.Categorical):
    """A categorical distribution whose ``sample()`` is its mode: greedy decoding of the controller."""

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008 (torch's signature)
        mode = self.probs.argmax(-1)
        return mode.expand(torch.Size(sample_shape) + mode.shape)


class EnasTaggedModule(ValidationForwardingMixin, EnasLightningModule):
    """NNI's ENAS module fed tagged batches, validating the controller's greedy architecture each epoch."""

    def __init__(self, training_module, *, seed: int | None = None, **kwargs: Any):
        super().__init__(training_module, **kwargs)
        self.seed = seed
        self.greedy_available = True

    def set_model(self, model) -> None:
        # The controller (policy network) is built here: seed its initial weights without touching the global RNG.
        with torch.random.fork_rng(devices=[]):
            if self.seed is not None:
                torch.manual_seed(self.seed)
            super().set_model(model)

    def training_step(self, batch_packed, batch_idx):
        if not (isinstance(batch_packed, (tuple, list)) and len(batch_packed) == 2
                and isinstance(batch_packed[1], str) and batch_packed[1] in _MODES):
            raise TypeError("ENAS: expected batches tagged (batch, 'train' | 'val') by EnasBaseline.train_dataloader, "
                            f"got a {type(batch_packed).__name__}")
        return super().training_step(tuple(batch_packed), batch_idx)

    def greedy_sample(self) -> tuple[dict[str, Any], dict[str, dict[Any, float]]]:
        """The controller's most likely architecture (argmax at every step) and the step-wise probabilities.

        The policy's action distribution is swapped, for this one decoding, for one whose ``sample()`` is
        the argmax (tianshou's own ``deterministic_eval`` does not apply: NNI's environment declares a
        ``gym`` action space, tianshou 0.5 recognises ``gymnasium`` ones). A policy without ``dist_fn``
        gives one stochastic controller sample instead, and the log says so.
        """
        policy = self.policy
        has_dist = hasattr(policy, "dist_fn")
        if not has_dist and self.greedy_available:
            logger.warning("ENAS: the controller policy has no dist_fn; exporting one controller sample")
            self.greedy_available = False
        was_training, dist_fn = policy.training, getattr(policy, "dist_fn", None)
        policy.eval()
        try:
            if has_dist:
                policy.dist_fn = _ArgmaxCategorical
            with torch.no_grad():
                sample = dict(self.generator.next_sample())
            logits = self.generator.sample_logits or {}
        finally:
            if has_dist:
                policy.dist_fn = dist_fn
            policy.train(was_training)
        space = self.generator.simplified_space
        probs = {label: {value: float(p) for value, p in zip(space[label].values, values, strict=False)}
                 for label, values in logits.items()}
        return sample, probs

    def on_validation_epoch_start(self) -> None:
        self.fix_path(self.greedy_sample()[0])
        super().on_validation_epoch_start()

    def validation_step(self, batch: Any, batch_idx: int) -> Any:
        # The greedy path was fixed for the whole epoch; the next training step resamples.
        return self.training_module.validation_step(batch, batch_idx)


class EnasBaseline(ENAS):
    """NNI's ENAS on pytorch-lightning 2.x; exports the controller's most likely architecture.

    Parameters
    ----------
    reward_metric_name : str or None
        The per-batch metric the evaluator logs in ``validation_step`` (``on_step=True``) that rewards the
        controller.
    seed : int or None
        Seeds the controller's initial weights (sampling uses the global torch RNG).
    arc_learning_rate : float or None
        Ignored (the controller's learning rate is set by ``policy_fn``; NNI's default 1e-4).
    **kwargs
        Any other :class:`~nni.nas.strategy.ENAS` argument (``batches_per_update``, ``update_kwargs``,
        ``policy_fn``, ``warmup_epochs``, ``replay_buffer_size``, ``log_prob_every_n_step``, ``penalty``).
    """

    def __init__(self, *, reward_metric_name: str | None = None, seed: int | None = None,
                 arc_learning_rate: float | None = None, **kwargs: Any):
        super().__init__(reward_metric_name=reward_metric_name, **kwargs)
        self.seed = seed

    def configure_oneshot_module(self, training_module) -> EnasTaggedModule:
        return EnasTaggedModule(training_module, seed=self.seed, batches_per_update=self.batches_per_update,
                                log_prob_every_n_step=self.log_prob_every_n_step,
                                replay_buffer_size=self.replay_buffer_size,
                                reward_metric_name=self.reward_metric_name, policy_fn=self.policy_fn,
                                update_kwargs=self.update_kwargs, warmup_epochs=self.warmup_epochs,
                                penalty=self.penalty)

    def train_dataloader(self, train_dataloader_fn, val_dataloader_fn):
        from nni.nas.oneshot.pytorch._dataloader import ConcatLoader  # NNI's Lightning-2 "all train, then all val"

        return ConcatLoader({"train": TaggedLoader(train_dataloader_fn(), "train"),
                             "val": TaggedLoader(val_dataloader_fn(), "val")})

    def val_dataloader(self, train_dataloader_fn, val_dataloader_fn):
        # NNI returns None: no validation epoch. Validate the greedy architecture instead.
        return val_dataloader_fn()

    def export(self) -> dict[str, Any]:
        """The controller's most likely architecture (greedy decoding)."""
        return self.oneshot_module.greedy_sample()[0]

    def export_probs(self) -> dict[str, dict[Any, float]]:
        """The controller's probabilities at each step of the greedy decoding (conditioned on earlier steps)."""
        return self.oneshot_module.greedy_sample()[1]
