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

import numpy as np
import torch
from nni.nas.oneshot.pytorch.sampling import EnasLightningModule
from nni.nas.oneshot.pytorch.strategy import ENAS
from tianshou.data import Batch

from ._hooks import ValidationForwardingMixin, step_seed

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


# Replay-buffer fields that change as trajectories arrive (the rest is set by the constructor).
_BUFFER_FIELDS = ("_meta", "_indices", "last_index", "_index", "_size", "_ep_rew", "_ep_len", "_ep_idx")


def _to_tensors(value: Any) -> Any:
    """numpy/tianshou values as tensors and plain containers, so a weights-only checkpoint can hold them."""
    if isinstance(value, Batch):
        return {"__batch__": {key: _to_tensors(item) for key, item in value.items()}}
    if isinstance(value, np.ndarray | np.generic):
        array = np.asarray(value)
        if array.dtype == object:
            raise TypeError("ENAS: cannot checkpoint a replay buffer holding Python objects")
        return {"__numpy__": torch.from_numpy(array.copy()), "scalar": isinstance(value, np.generic)}
    if isinstance(value, dict):
        return {"__dict__": {key: _to_tensors(item) for key, item in value.items()}}
    return value


def _from_tensors(value: Any) -> Any:
    if isinstance(value, dict) and "__batch__" in value:
        return Batch({key: _from_tensors(item) for key, item in value["__batch__"].items()})
    if isinstance(value, dict) and "__numpy__" in value:
        array = value["__numpy__"].numpy()
        return array[()] if value["scalar"] else array
    if isinstance(value, dict) and "__dict__" in value:
        return {key: _from_tensors(item) for key, item in value["__dict__"].items()}
    return value


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

    def _optimizer_order(self) -> list[str]:
        """Names of the PPO optimizer's parameters in its own order (NNI builds it from a set: any order)."""
        names = {id(p): name for name, p in self.policy.named_parameters()}
        return [names[id(p)] for group in self.policy.optim.param_groups for p in group["params"]]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The controller's weights are a submodule (in the state dict); its PPO optimizer is not.
        super().on_save_checkpoint(checkpoint)
        checkpoint["enas_policy_optimizer"] = {"state": self.policy.optim.state_dict(),
                                               "order": self._optimizer_order()}
        # NNI updates the controller from the replay buffer on every step once a trajectory arrived, so
        # the buffer and the trajectory counter are training state too.
        checkpoint["enas_replay"] = {"counter": self._trajectory_counter, "buffer": {
            name: _to_tensors(getattr(self._replay_buffer, name)) for name in _BUFFER_FIELDS}}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        replay = checkpoint.get("enas_replay")
        if replay is not None:
            self._trajectory_counter = replay["counter"]
            for name, value in replay["buffer"].items():
                setattr(self._replay_buffer, name, _from_tensors(value))
        saved = checkpoint.get("enas_policy_optimizer")
        if saved is None:
            return
        position = {name: i for i, name in enumerate(self._optimizer_order())}
        new_index = [position[name] for name in saved["order"]]  # saved index → this optimizer's index
        state = saved["state"]
        remapped = {"state": {new_index[k]: v for k, v in state["state"].items()},
                    "param_groups": [{**g, "params": [new_index[k] for k in g["params"]]}
                                     for g in state["param_groups"]]}
        if len(remapped["param_groups"]) == 1:  # the group's index list must follow this optimizer's order
            remapped["param_groups"][0]["params"] = sorted(remapped["param_groups"][0]["params"])
        self.policy.optim.load_state_dict(remapped)

    def training_step(self, batch_packed, batch_idx):
        if self.seed is not None:
            # The controller samples from torch's global RNG and tianshou's PPO shuffles its minibatches with
            # numpy's: both reseeded from (seed, epoch, batch), so a resumed run repeats them.
            seed = step_seed(self.seed, self.trainer.current_epoch, batch_idx)
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)  # noqa: NPY002 (tianshou shuffles with the global RNG)
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
        Seeds the controller's initial weights and, per (epoch, batch), the global torch RNG its sampling
        draws from. A resumed run restores the controller and its optimizer; NNI's default replay buffer
        holds only the trajectories since the last update, so nothing else is lost (an explicit
        ``replay_buffer_size`` restarts empty).
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
