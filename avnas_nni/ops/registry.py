"""The operator registry: one class per candidate of paper Table 1, by cell kind and paper name.

Cell kinds: ``"M"`` sequence, ``"U"`` unary, ``"D"`` binary, ``"I"`` cross-modal interaction,
``"F"`` fusion, ``"T"`` transformation. Importing :mod:`avnas_nni.ops` fills :data:`OPS`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

__all__ = ["ParameterFreeOp", "KINDS", "OPS", "PAPER_ORDER", "UnknownOpError", "build_op", "op_names", "register"]

logger = logging.getLogger(__name__)

KINDS: dict[str, str] = {
    "M": "sequence",
    "U": "unary",
    "D": "binary",
    "I": "interaction",
    "F": "fusion",
    "T": "transformation",
}

OPS: dict[str, dict[str, type[nn.Module]]] = {kind: {} for kind in KINDS}

# Table 1's order; op_names lists in it whatever the import order of the operator modules was.
PAPER_ORDER: dict[str, tuple[str, ...]] = {
    "M": ("FFN", "MLP", "Conv", "SelfAttention", "SelfSSM", "Skip"),
    "U": ("SiLU", "LayerNorm", "Skip"),
    "D": ("Add", "Hadamard"),
    "I": ("CrossAttention", "CrossSSM"),
    "F": ("Add", "GatedAttention"),
    "T": ("SelfAttention", "SelfSSM"),
}

ModuleClass = TypeVar("ModuleClass", bound=type[nn.Module])


class UnknownOpError(KeyError, ValueError):
    """An unknown cell kind or operator name; both a KeyError and a ValueError, with a plain message."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""


def register(kind: str, name: str) -> Callable[[ModuleClass], ModuleClass]:
    """Class decorator registering an operator class under ``OPS[kind][name]``.

    Parameters
    ----------
    kind : str
        Cell kind, one of :data:`KINDS`.
    name : str
        The operator's name in the paper, e.g. ``"SelfSSM"``.

    Returns
    -------
    callable
        The decorator; it returns the class unchanged, so one class can be registered under several kinds.
    """
    _check_kind(kind)

    def decorator(cls: ModuleClass) -> ModuleClass:
        existing = OPS[kind].get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"register: {kind}/{name} is already registered to {existing.__qualname__}")
        OPS[kind][name] = cls
        return cls

    return decorator


def _check_kind(kind: str) -> None:
    if kind not in OPS:
        raise UnknownOpError(f"unknown cell kind {kind!r}; valid kinds: {', '.join(KINDS)}")


def op_names(kind: str) -> list[str]:
    """Operator names registered for a cell kind: Table 1's order, then any others as registered.

    Parameters
    ----------
    kind : str
        Cell kind, one of :data:`KINDS`.

    Returns
    -------
    list of str
    """
    _check_kind(kind)
    paper = PAPER_ORDER[kind]
    return sorted(OPS[kind], key=lambda name: paper.index(name) if name in paper else len(paper))


def _accepted_settings(cls: type[nn.Module], settings: dict[str, Any]) -> dict[str, Any]:
    """The settings the constructor names (all of them when it takes ``**kwargs``)."""
    params = inspect.signature(cls.__init__).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return dict(settings)
    names = _named_settings(cls)
    return {key: value for key, value in settings.items() if key in names}


def build_op(kind: str, name: str, dim: int, **settings: Any) -> nn.Module:
    """Build an operator of a cell kind at channel width ``dim``.

    Parameters
    ----------
    kind : str
        Cell kind, one of :data:`KINDS`.
    name : str
        Operator name, one of ``op_names(kind)``.
    dim : int
        Channel width d the operator works at; inputs are (batch, m, dim).
    **settings
        Keyword settings (``kernel_size``, ``num_heads``, ``d_state``, ``dropout``, ...). Each operator
        receives the ones its constructor names and ignores the rest, so one settings dict can be passed
        to every candidate of a space; a setting that no registered operator names is an error.

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    UnknownOpError
        (a KeyError and a ValueError) for an unknown kind or name; the message lists the valid ones.
    ValueError
        When ``dim`` is not a positive int, a setting is named by no operator, or is invalid for this one.
    """
    _check_kind(kind)
    cls = OPS[kind].get(name)
    if cls is None:
        valid = ", ".join(op_names(kind)) or "(none)"
        raise UnknownOpError(f"unknown {KINDS[kind]} ({kind}) operator {name!r}; valid names: {valid}")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
        raise ValueError(f"build_op {kind}/{name}: dim must be a positive int, got {dim!r}")
    unknown = sorted(set(settings) - _known_settings())
    if unknown:  # a typo (d_stat=8) would otherwise vanish: the shared dict only excuses another op's settings
        raise ValueError(f"build_op {kind}/{name}: no operator takes the setting(s) {unknown}; known settings: "
                         f"{sorted(_known_settings())}")
    accepted = _accepted_settings(cls, settings)
    ignored = sorted(set(settings) - set(accepted))
    if ignored:
        logger.debug("build_op %s/%s ignores settings %s (another operator's)", kind, name, ignored)
    return cls(dim, **accepted)


def _known_settings() -> set[str]:
    """Every setting some registered operator names (an operator taking ``**kwargs`` names none in particular)."""
    return {key for table in OPS.values() for cls in table.values() for key in _named_settings(cls)}


def _named_settings(cls: type[nn.Module]) -> set[str]:
    params = inspect.signature(cls.__init__).parameters.values()
    return {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)} - {"self", "dim"}


class ParameterFreeOp(nn.Module):
    """Base of the operators without parameters (Skip, SiLU, Add, Hadamard): they only record their width.

    Parameters
    ----------
    dim : int
        Width d (unused by the computation; kept so every operator is built as ``Op(dim, ...)``).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
