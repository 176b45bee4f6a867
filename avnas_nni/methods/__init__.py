"""Expert-designed video-hashing methods of the paper's Table 2 (lines 3–11), each written from its paper.

A method is a :class:`HashingMethod` (features → real codes in [−1, 1], its own loss, its paper's training
settings) trained by :class:`MethodModule` on the same features, splits and metric as every other row;
:func:`avnas_nni.pipeline.run_method` writes the usual run directory, whose ``arch.json`` holds
``{"method": NAME, "kwargs": {...}}`` so :func:`avnas_nni.pipeline.load_run_model` rebuilds it.

Implemented: AVHash (:mod:`avnas_nni.methods.avhash`, supervised), AVH (:mod:`avnas_nni.methods.avh`, supervised,
on the visual features), ConMH (:mod:`avnas_nni.methods.conmh`), BTH
(:mod:`avnas_nni.methods.bth`) and SSTH (:mod:`avnas_nni.methods.ssth`), all three self-supervised: trained without
labels, on the visual features.
"""

from __future__ import annotations

from typing import Any

from avnas_nni.methods.avh import AVH
from avnas_nni.methods.avhash import AVHash
from avnas_nni.methods.base import HashingMethod, MethodModule
from avnas_nni.methods.bth import BTH
from avnas_nni.methods.conmh import ConMH
from avnas_nni.methods.ssth import SSTH

__all__ = ["METHODS", "HashingMethod", "MethodModule", "AVH", "AVHash", "BTH", "ConMH", "SSTH", "build_method"]

#: Methods by registry name.
METHODS: dict[str, type[HashingMethod]] = {cls.name: cls for cls in (AVHash, ConMH, BTH, SSTH, AVH)}


def build_method(name: str, **kwargs: Any) -> HashingMethod:
    """A fresh network of method ``name`` (``dim``, ``length``, ``bits`` and the method's own arguments).

    Raises
    ------
    ValueError
        For an unknown name or arguments the method does not take.
    """
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; expected one of {sorted(METHODS)}")
    try:
        return METHODS[name](**kwargs)
    except TypeError as exc:
        raise ValueError(f"method {name!r}: {exc}") from None
