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

from .one_level import OneLevel, OneLevelLightningModule
from .pruning import TopTwoSum, prune

__all__ = ["OneLevel", "OneLevelLightningModule", "TopTwoSum", "prune", "STRATEGIES", "make_strategy"]


def _one_level(seed: int | None = None, arc_learning_rate: float = 1e-3, **kwargs: Any) -> Strategy:
    return OneLevel(seed=seed, arc_learning_rate=arc_learning_rate, **kwargs)


#: Name → factory taking common keyword settings (``seed``, ``arc_learning_rate``, strategy-specific extras).
STRATEGIES: dict[str, Callable[..., Strategy]] = {
    "avnas": _one_level,
}


def make_strategy(name: str, **kwargs: Any) -> Strategy:
    """Build the strategy registered as ``name``."""
    try:
        factory = STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; expected one of {sorted(STRATEGIES)}") from None
    return factory(**kwargs)
