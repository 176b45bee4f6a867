"""SPOS as a baseline (paper Table 2): NNI's single-path supernet training, then an evolutionary search.

Stage 1 is NNI's :class:`~nni.nas.strategy.RandomOneShot` unchanged: every batch trains one path drawn
uniformly. Its ``export()`` is a random architecture, so stage 2 is SPOS's own search: an evolution over
subnets of the trained supernet, each scored with the weights it inherits. A subnet is fixed with the
path-sampling layers' ``resample(memo=sample)`` and scored by the evaluator module's
``validation_score()``.

Contract of the evaluator module (duck-typed): ``validation_score() -> float`` evaluates the module's
current network (``self.model``, in whatever mode it sets itself, e.g. ``eval()``) on the validation data
and returns a number where higher is better (set ``mode="min"`` for a loss). It must not change weights.
Networks with BatchNorm should recalibrate its statistics per subnet (SPOS does); LayerNorm needs nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from nni.mutable import Categorical
from nni.nas.oneshot.pytorch.sampling import RandomSamplingLightningModule
from nni.nas.oneshot.pytorch.strategy import RandomOneShot

from ._hooks import ValidationForwardingMixin

__all__ = ["SposBaseline", "SposValidatingModule", "EvolutionResult", "evolutionary_search", "choices_of"]

logger = logging.getLogger(__name__)


class SposValidatingModule(ValidationForwardingMixin, RandomSamplingLightningModule):
    """NNI's uniform path-sampling module, seeded, with the validation-epoch hooks forwarded.

    NNI draws each path with an unseeded ``RandomState``; here the draw of a step comes from
    ``RandomState([seed, epoch, phase, batch_idx])`` when ``seed`` is set, so a run (and a resumed run)
    trains the same paths. Each validation batch runs a freshly sampled path (NNI's behaviour), so the
    supernet's epoch metric is that of random subnets, not of one architecture.
    """

    def __init__(self, training_module, filter=None, *, seed: int | None = None):
        super().__init__(training_module, filter)
        self.seed = seed
        self._random_state = np.random.RandomState(seed)
        self._choices: dict[str, Any] | None = None

    def _reseed(self, phase: int, batch_idx: int) -> None:
        if self.seed is not None:
            self._random_state = np.random.RandomState([self.seed, self.trainer.current_epoch, phase, batch_idx])

    def _uniform(self) -> dict[str, Any]:
        if self._choices is None:
            self._choices = self.model.simplify()
        sample: dict[str, Any] = {}
        for mutable in self._choices.values():
            mutable.random(memo=sample, random_state=self._random_state)
        self.fix_path(sample)
        return sample

    def resample(self) -> dict[str, Any]:
        return self._repeat_until_valid(self._uniform)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        self._reseed(0, batch_idx)
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch: Any, batch_idx: int) -> Any:
        self._reseed(1, batch_idx)
        return super().validation_step(batch, batch_idx)


@dataclass
class EvolutionResult:
    """Outcome of :func:`evolutionary_search`: the best sample, its score, and every evaluation in order."""

    best_sample: dict[str, Any]
    best_score: float
    evaluated: list[tuple[dict[str, Any], float]] = field(default_factory=list)
    seconds: float = 0.0


def choices_of(space: Any) -> dict[str, list[Any]]:
    """Label → candidate values of every choice of a model space (``simplify()``; categorical only)."""
    out: dict[str, list[Any]] = {}
    for label, mutable in space.simplify().items():
        if not isinstance(mutable, Categorical):
            raise TypeError(f"{label}: SPOS's evolution searches categorical choices only, "
                            f"got {type(mutable).__name__}")
        out[label] = list(mutable.values)
    return out


def evolutionary_search(choices: Mapping[str, Sequence[Any]], score: Callable[[dict[str, Any]], float], *,
                        population_size: int = 10, generations: int = 4, parents: int = 5,
                        mutation_prob: float = 0.1, crossover_fraction: float = 0.5, mode: str = "max",
                        seed: int | None = None, max_attempts: int = 50) -> EvolutionResult:
    """SPOS's evolution: uniform initial population, then top-k parents breed by crossover and mutation.

    Generation 0 is ``population_size`` uniform samples. Each of the ``generations`` rounds keeps the
    ``parents`` best samples seen so far and fills the population with new children: a fraction
    ``crossover_fraction`` by uniform crossover of two distinct parents, the rest by mutating one parent
    (each choice redrawn uniformly with probability ``mutation_prob``). Children already evaluated are
    redrawn (up to ``max_attempts`` times; a tiny space may yield fewer). Every sample is scored once.

    Parameters
    ----------
    choices : mapping
        Label → candidate values.
    score : callable
        Sample → number; higher is better unless ``mode == "min"``.
    seed : int or None
        Seeds the evolution's own ``numpy.random.RandomState``: with a deterministic ``score`` the whole
        search is deterministic.

    Returns
    -------
    EvolutionResult
        The best sample ever evaluated.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode: expected 'max' or 'min', got {mode!r}")
    for name, value in (("population_size", population_size), ("parents", parents)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    if not isinstance(generations, int) or generations < 0:
        raise ValueError(f"generations: expected an integer ≥ 0, got {generations!r}")
    for name, value in (("mutation_prob", mutation_prob), ("crossover_fraction", crossover_fraction)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name}: expected a probability in [0, 1], got {value!r}")
    if not choices:
        raise ValueError("choices: the space has no choice to search")

    started = time.perf_counter()
    rng = np.random.RandomState(seed)
    labels = list(choices)
    scores: dict[tuple, float] = {}
    evaluated: list[tuple[dict[str, Any], float]] = []

    def key(sample: dict[str, Any]) -> tuple:
        return tuple(repr(sample[label]) for label in labels)

    def evaluate(sample: dict[str, Any]) -> None:
        value = float(score(dict(sample)))
        scores[key(sample)] = value
        evaluated.append((dict(sample), value))
        logger.debug("evolution: %s → %.4f", sample, value)

    def uniform() -> dict[str, Any]:
        return {label: choices[label][rng.randint(len(choices[label]))] for label in labels}

    def mutate(parent: dict[str, Any]) -> dict[str, Any]:
        return {label: (choices[label][rng.randint(len(choices[label]))] if rng.rand() < mutation_prob
                        else parent[label]) for label in labels}

    def crossover(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        return {label: (a if rng.rand() < 0.5 else b)[label] for label in labels}

    def fresh(make: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        for _ in range(max_attempts):
            child = make()
            if key(child) not in scores:
                return child
        return None

    def ranked() -> list[dict[str, Any]]:
        order = sorted(evaluated, key=lambda item: item[1], reverse=(mode == "max"))
        return [sample for sample, _ in order]

    for _ in range(population_size):
        child = fresh(uniform)
        if child is not None:
            evaluate(child)
    def breed(top: list[dict[str, Any]], by_crossover: bool) -> dict[str, Any]:
        if by_crossover:
            a, b = rng.choice(len(top), size=2, replace=False)
            return crossover(top[a], top[b])
        return mutate(top[rng.randint(len(top))])

    for generation in range(generations):
        top = ranked()[:parents]
        n_children = max(population_size - len(top), 0)
        n_cross = int(round(n_children * crossover_fraction)) if len(top) > 1 else 0
        for i in range(n_children):
            child = fresh(partial(breed, top, i < n_cross))
            if child is not None:
                evaluate(child)
        logger.info("evolution generation %d: %d evaluated, best %.4f", generation + 1, len(evaluated),
                    scores[key(ranked()[0])])
    best = ranked()[0]
    return EvolutionResult(best_sample=best, best_score=scores[key(best)], evaluated=evaluated,
                           seconds=time.perf_counter() - started)


class SposBaseline(RandomOneShot):
    """SPOS: NNI's uniform single-path supernet training, then evolution with inherited weights.

    After the supernet trains (inside ``run``), :func:`evolutionary_search` scores subnets with the
    evaluator module's ``validation_score()`` (see the module docstring for the contract) and
    ``export()`` returns the best one. ``supernet`` is the trained supernet.

    Parameters
    ----------
    population_size, generations, parents, mutation_prob, crossover_fraction
        Evolution settings (see :func:`evolutionary_search`); small defaults, SPOS used 50/20/10/0.1/0.5.
    mode : str
        ``max`` when a higher ``validation_score()`` is better, ``min`` otherwise.
    seed : int or None
        Seeds the path sampling of supernet training and the evolution (weights and data order follow
        the global RNGs, seeded by the caller).
    **kwargs
        Any other :class:`~nni.nas.strategy.RandomOneShot` argument (``filter``, ``mutation_hooks``).

    Attributes
    ----------
    evolution : EvolutionResult or None
        Set once ``run`` finishes: best sample, best score, every evaluation, search seconds.
    """

    def __init__(self, *, population_size: int = 10, generations: int = 4, parents: int = 5,
                 mutation_prob: float = 0.1, crossover_fraction: float = 0.5, mode: str = "max",
                 seed: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.evolution_settings = dict(population_size=population_size, generations=generations, parents=parents,
                                       mutation_prob=mutation_prob, crossover_fraction=crossover_fraction,
                                       mode=mode)
        self.seed = seed
        self.evolution: EvolutionResult | None = None

    def configure_oneshot_module(self, training_module):
        if not callable(getattr(training_module, "validation_score", None)):
            raise TypeError(f"SPOS: the evaluator module {type(training_module).__name__} has no "
                            "validation_score() -> float to rank subnets with")
        return SposValidatingModule(training_module, self.filter, seed=self.seed)

    def _run(self) -> None:
        super()._run()  # trains the supernet (NNI's RandomOneShot)
        module = self.oneshot_module
        if not isinstance(module, SposValidatingModule):
            raise TypeError(f"SPOS: unexpected one-shot module {type(module).__name__}")

        def score(sample: dict[str, Any]) -> float:
            module.fix_path(sample)
            with torch.no_grad():
                return float(module.training_module.validation_score())

        self.evolution = evolutionary_search(choices_of(self.supernet), score, seed=self.seed,
                                             **self.evolution_settings)
        module.fix_path(self.evolution.best_sample)
        logger.info("SPOS evolution: %d subnets in %.1f s, best score %.4f", len(self.evolution.evaluated),
                    self.evolution.seconds, self.evolution.best_score)

    @property
    def best_score(self) -> float | None:
        """``validation_score()`` of the exported subnet with inherited weights."""
        return None if self.evolution is None else self.evolution.best_score

    @property
    def search_seconds(self) -> float | None:
        """Seconds the evolution took (supernet training excluded)."""
        return None if self.evolution is None else self.evolution.seconds

    def export(self) -> dict[str, Any]:
        """The best subnet the evolution found."""
        if self.evolution is None:
            raise RuntimeError("SPOS: run the strategy before exporting")
        return dict(self.evolution.best_sample)

    def export_probs(self) -> None:
        """SPOS has no architecture distribution: None."""
        return None

    def search_record(self) -> dict[str, Any]:
        """JSON-ready account of the evolution: settings, seconds and every subnet scored, in order."""
        if self.evolution is None:
            raise RuntimeError("SPOS: run the strategy before asking for its record")
        return {"evolution": dict(self.evolution_settings), "seconds": round(self.evolution.seconds, 3),
                "best_score": self.evolution.best_score,
                "evaluated": [{"arch": sample, "score": score} for sample, score in self.evolution.evaluated]}
