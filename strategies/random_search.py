"""Random search as a baseline (paper Table 2, "Random 1–5"): uniform samples trained from scratch.

``k`` architectures are drawn uniformly with NNI's ``Mutable.random`` and a seeded
``numpy.random.RandomState``. With ``k == 1`` nothing is trained: the sample is exported with
``supernet = None`` and whoever consumes the strategy trains it from scratch (Table 2's Random 1–5 are
five such single samples, seeds 1…5). With ``k > 1`` every candidate is trained from scratch for the
evaluator's epochs and the best by the logged validation metric is exported; ``supernet`` is then the
winner's trained network (already fixed: pruning it is a no-op).

Why not NNI's multi-trial ``Random`` strategy: on the sequential engine every trial reuses the same
evaluator object, so trials after the first train 0 batches and repeat the first metric. Here each
candidate gets a **fresh evaluator**: the NNI evaluator's traced module and trainer are re-instantiated
from their recorded constructor arguments (``trace_copy().get()``; NNI requires them traced anyway), the
loaders are shared (they are re-iterable). Callbacks passed to the trainer are the same objects for every
candidate, so a history callback sees every candidate's epochs in order. An untraced module can be
handled by passing ``evaluator_factory``. The candidate network is rebuilt from the space's recorded
arguments inside ``nni.nas.space.model_context(sample)``, i.e. with fresh weights seeded per candidate.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from nni.common.serializer import is_traceable
from nni.nas.evaluator.pytorch import Lightning
from nni.nas.nn.pytorch import ModelSpace
from nni.nas.space import RawFormatModelSpace, model_context
from nni.nas.strategy.base import Strategy
from torch import nn

__all__ = ["RandomBaseline", "Candidate", "uniform_sample", "fresh_evaluator", "fresh_network"]

logger = logging.getLogger(__name__)


@dataclass
class Candidate:
    """One trained candidate: its sample, validation score, training seconds and trained network."""

    sample: dict[str, Any]
    score: float
    seconds: float
    network: nn.Module
    module: Any


def uniform_sample(space: ModelSpace, random_state: np.random.RandomState) -> dict[str, Any]:
    """Label → value drawn uniformly for every choice of ``space`` (NNI's ``Mutable.random`` per leaf)."""
    sample: dict[str, Any] = {}
    for mutable in space.simplify().values():
        mutable.random(memo=sample, random_state=random_state)
    return sample


def _reinstantiate(obj: Any, what: str) -> Any:
    if not is_traceable(obj):
        raise TypeError(f"random search: the evaluator's {what} ({type(obj).__name__}) is not traced with nni.trace; "
                        "trace it or pass evaluator_factory")
    return obj.trace_copy().get()


def fresh_evaluator(evaluator: Lightning) -> Lightning:
    """A new ``Lightning`` evaluator with a new module and trainer built from ``evaluator``'s traced arguments.

    The loaders (or datamodule) are shared; ``ckpt_path`` is dropped from ``fit_kwargs`` (a checkpoint of
    one candidate must not be resumed into another).
    """
    fit_kwargs = {k: v for k, v in evaluator.fit_kwargs.items() if k != "ckpt_path"}
    return Lightning(_reinstantiate(evaluator.module, "module"), _reinstantiate(evaluator.trainer, "trainer"),
                     train_dataloaders=evaluator.train_dataloaders, val_dataloaders=evaluator.val_dataloaders,
                     datamodule=evaluator.datamodule, fit_kwargs=fit_kwargs)


def fresh_network(space: ModelSpace, sample: dict[str, Any], seed: int | None = None) -> nn.Module:
    """The network ``sample`` picks from ``space``, with new weights (drawn after ``torch.manual_seed(seed)``).

    Rebuilt from the space's recorded constructor arguments inside ``model_context(sample)``; a space
    without them is frozen and deep-copied instead (the candidate then starts from the space's weights).
    """
    if seed is not None:
        torch.manual_seed(seed)
    if hasattr(space, "trace_args") and hasattr(space, "trace_kwargs"):
        with model_context(sample):
            return type(space)(*space.trace_args, **space.trace_kwargs)
    return copy.deepcopy(space.freeze(sample))


class RandomBaseline(Strategy):
    """Uniform random search over a model space, each candidate trained from scratch with a fresh evaluator.

    Parameters
    ----------
    k : int
        Candidates. 1: export the sample untrained (``supernet`` is None).
    seed : int or None
        Seeds the sampling (``numpy.random.RandomState(seed)``) and each candidate's initial weights
        (``seed + i``).
    monitor : str
        Validation metric the evaluator module logs (read from ``trainer.callback_metrics`` after
        training) that ranks candidates.
    mode : str
        ``max`` or ``min``: which ``monitor`` is better.
    evaluator_factory : callable or None
        ``() -> Lightning`` giving a fresh evaluator per candidate; default: :func:`fresh_evaluator`
        of the evaluator the strategy was given.
    arc_learning_rate : float or None
        Ignored (no architecture parameters).

    Attributes
    ----------
    samples : list of dict
        The ``k`` samples, in draw order.
    candidates : list of Candidate
        The trained candidates (empty when ``k == 1``).
    search_seconds : float
        Seconds spent in ``run``.
    """

    def __init__(self, *, k: int = 1, seed: int | None = None, monitor: str = "val_mAP", mode: str = "max",
                 evaluator_factory: Callable[[], Lightning] | None = None, arc_learning_rate: float | None = None):
        super().__init__()
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k: expected a positive integer, got {k!r}")
        if mode not in ("max", "min"):
            raise ValueError(f"mode: expected 'max' or 'min', got {mode!r}")
        self.k, self.seed, self.monitor, self.mode = k, seed, monitor, mode
        self.evaluator_factory = evaluator_factory
        self.samples: list[dict[str, Any]] = []
        self.candidates: list[Candidate] = []
        self.search_seconds = 0.0
        self._best: dict[str, Any] | None = None
        self._best_network: nn.Module | None = None

    def extra_repr(self) -> str:
        return f"k={self.k}, seed={self.seed}, monitor={self.monitor!r}, mode={self.mode!r}"

    def _initialize(self, model_space, engine):
        if not isinstance(model_space, RawFormatModelSpace):
            raise TypeError(f"random search: expected a RawFormatModelSpace, got {type(model_space).__name__}")
        if not isinstance(model_space.model_space, ModelSpace):
            raise TypeError(f"random search: expected a ModelSpace, got {type(model_space.model_space).__name__}")
        if self.k > 1 and self.evaluator_factory is None and not isinstance(model_space.evaluator, Lightning):
            raise TypeError("random search: k > 1 needs a Lightning evaluator or an evaluator_factory")
        return model_space

    def _run(self) -> None:
        started = time.perf_counter()
        space = self.model_space.model_space
        random_state = np.random.RandomState(self.seed)
        self.samples = [uniform_sample(space, random_state) for _ in range(self.k)]
        if self.k == 1:
            self._best, self._best_network = self.samples[0], None
            logger.info("random search: one sample, left untrained: %s", self._best)
        else:
            for index, sample in enumerate(self.samples):
                self.candidates.append(self._train(index, sample))
            pick = max if self.mode == "max" else min
            best = pick(self.candidates, key=lambda candidate: candidate.score)
            self._best, self._best_network = best.sample, best.network
            logger.info("random search: best of %d candidates scored %s = %.4f", self.k, self.monitor, best.score)
        self.search_seconds = time.perf_counter() - started

    def _train(self, index: int, sample: dict[str, Any]) -> Candidate:
        seed = None if self.seed is None else self.seed + index
        network = fresh_network(self.model_space.model_space, sample, seed)
        evaluator = self.evaluator_factory() if self.evaluator_factory else fresh_evaluator(self.model_space.evaluator)
        started = time.perf_counter()
        evaluator.evaluate(network)  # set_model + trainer.fit on this candidate's own module and trainer
        seconds = time.perf_counter() - started
        value = evaluator.trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise KeyError(f"random search: the evaluator did not log {self.monitor!r}; logged "
                           f"{sorted(evaluator.trainer.callback_metrics)}")
        score = float(value)
        logger.info("random search: candidate %d/%d %s = %.4f (%.1f s)", index + 1, self.k, self.monitor, score,
                    seconds)
        return Candidate(sample=sample, score=score, seconds=seconds, network=network, module=evaluator.module)

    def export(self) -> dict[str, Any]:
        """The best candidate (``k > 1``) or the single sample (``k == 1``)."""
        if self._best is None:
            raise RuntimeError("random search: run the strategy before exporting")
        return dict(self._best)

    def export_probs(self) -> None:
        """Random search has no architecture distribution: None."""
        return None

    def search_record(self) -> dict[str, Any]:
        """JSON-ready account of the search: every sample in draw order, with score and seconds once trained."""
        if self._best is None:
            raise RuntimeError("random search: run the strategy before asking for its record")
        rows = [{"arch": sample} for sample in self.samples]
        # candidates: empty (k = 1) or one per sample
        for row, candidate in zip(rows, self.candidates, strict=False):
            row.update(score=candidate.score, seconds=round(candidate.seconds, 3))
        return {"k": self.k, "monitor": self.monitor, "candidates": rows}

    @property
    def supernet(self) -> nn.Module | None:
        """The winner's trained network (``k > 1``), or None: train the exported sample from scratch."""
        return self._best_network

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        pass
