"""Pruning a space or a trained supernet to an architecture, keeping the weights it already has."""

from __future__ import annotations

import logging
from typing import Any

from nni.nas.nn.pytorch import LayerChoice
from torch import nn

__all__ = ["TopTwoSum", "prune"]

logger = logging.getLogger(__name__)


class TopTwoSum(nn.Module):
    """The sum of the two kept candidates of a cell (Arch-2): ``Z = f1(X) + f2(X)``."""

    def __init__(self, first: nn.Module, second: nn.Module):
        super().__init__()
        self.first, self.second = first, second

    def forward(self, *args):
        return self.first(*args) + self.second(*args)


def prune(model: nn.Module, sample: dict[str, Any]) -> nn.Module:
    """Replace every choice of ``model`` **in place** by its chosen candidate(s); return ``model``.

    ``model`` is a model space or a supernet made from one by any NNI one-shot strategy (their mixed layers
    are ``LayerChoice`` subclasses). A cell's choice is a candidate name, or a list of two names whose
    outputs are summed (:class:`TopTwoSum`). The kept candidates are the model's own modules, so trained
    weights stay: ``copy.deepcopy`` first if the supernet must survive.

    Raises
    ------
    ValueError
        A choice of the model missing from ``sample`` or naming no candidate.
    """
    replaced = 0
    for name, module in list(model.named_modules()):
        if not isinstance(module, LayerChoice) or not name:
            continue
        if module.label not in sample:
            raise ValueError(f"architecture: missing choice for cell {module.label!r}")
        choice = sample[module.label]
        picks = choice if isinstance(choice, list) else [choice]
        for pick in picks:
            if pick not in module.names:
                raise ValueError(f"architecture: cell {module.label!r} has no candidate {pick!r}; "
                                 f"expected one of {module.names}")
        new = TopTwoSum(module[picks[0]], module[picks[1]]) if len(picks) == 2 else module[picks[0]]
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)
        replaced += 1
    logger.debug("pruned %d cells", replaced)
    return model
