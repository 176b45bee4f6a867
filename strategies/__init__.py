"""Search strategies: AV-NAS's one-level strategy and NNI's baselines configured for hashing spaces.

Every strategy here is an ordinary NNI strategy (``NasExperiment(space, evaluator, strategy)`` works) and
is generic: it sees a ``ModelSpace`` of ``LayerChoice``s and a Lightning evaluator, never the video space.
:func:`make_strategy` builds one by name from common settings; :func:`prune` turns a trained supernet
(or a space) into the exported network.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nni.nas.strategy import Strategy

from ._hooks import DEFAULT_ALPHA_INIT_STD, DEFAULT_ALPHA_TRAVEL
from .darts import DartsBaseline
from .diagnostics import cell_diagnostics, indecision_warning, summarise_search
from .enas import EnasBaseline
from .one_level import OneLevel, OneLevelLightningModule
from .proxyless import ProxylessBaseline
from .pruning import TopTwoSum, prune
from .random_search import RandomBaseline
from .spos import SposBaseline, evolutionary_search

__all__ = ["OneLevel", "OneLevelLightningModule", "TopTwoSum", "prune", "STRATEGIES", "make_strategy",
           "DartsBaseline", "ProxylessBaseline", "SposBaseline", "EnasBaseline", "RandomBaseline",
           "evolutionary_search", "cell_diagnostics", "summarise_search", "indecision_warning",
           "ALPHA_STRATEGIES", "DEFAULT_ALPHA_INIT_STD", "DEFAULT_ALPHA_TRAVEL"]


#: Strategies whose architecture is α (softmax probabilities per cell): they take the α policy settings
#: ``alpha_init_std`` and ``alpha_travel`` and ``keep_best``, and record ``init_probs``.
ALPHA_STRATEGIES = ("avnas", "darts", "proxyless")


def _one_level(seed: int | None = None, arc_learning_rate: float = 1e-3, **kwargs: Any) -> Strategy:
    return OneLevel(seed=seed, arc_learning_rate=arc_learning_rate, **kwargs)


def _darts(seed: int | None = None, arc_learning_rate: float = 3e-4, **kwargs: Any) -> Strategy:
    return DartsBaseline(seed=seed, arc_learning_rate=arc_learning_rate, **kwargs)


def _proxyless(seed: int | None = None, arc_learning_rate: float = 3e-4, **kwargs: Any) -> Strategy:
    return ProxylessBaseline(seed=seed, arc_learning_rate=arc_learning_rate, **kwargs)


def _spos(seed: int | None = None, arc_learning_rate: float | None = None, **kwargs: Any) -> Strategy:
    return SposBaseline(seed=seed, **kwargs)  # no architecture parameters


def _enas(seed: int | None = None, arc_learning_rate: float | None = None, **kwargs: Any) -> Strategy:
    # The controller is rewarded by the evaluator's per-batch validation mAP.
    kwargs.setdefault("reward_metric_name", "val_batch_mAP")
    return EnasBaseline(seed=seed, **kwargs)


def _random(seed: int | None = None, arc_learning_rate: float | None = None, **kwargs: Any) -> Strategy:
    return RandomBaseline(seed=seed, **kwargs)


#: Name → factory taking common keyword settings (``seed``, ``arc_learning_rate``, strategy-specific extras).
STRATEGIES: dict[str, Callable[..., Strategy]] = {
    "avnas": _one_level,
    "darts": _darts,
    "proxyless": _proxyless,
    "spos": _spos,
    "enas": _enas,
    "random": _random,
}


def make_strategy(name: str, **kwargs: Any) -> Strategy:
    """Build the strategy registered as ``name``."""
    try:
        factory = STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; expected one of {sorted(STRATEGIES)}") from None
    return factory(**kwargs)
