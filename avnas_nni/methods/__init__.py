"""Expert-designed video-hashing methods of the paper's Table 2 (lines 3–11), each written from its paper.

A method is a :class:`HashingMethod` (features → real codes in [−1, 1], its own loss, its paper's training
settings) trained by :class:`MethodModule` on the same features, splits and metric as every other row;
:func:`avnas_nni.pipeline.run_method` writes the usual run directory, whose ``arch.json`` holds
``{"method": NAME, "kwargs": {...}}`` so :func:`avnas_nni.pipeline.load_run_model` rebuilds it.

Implemented, in the order of the paper's Table 2: MCMSH (:mod:`avnas_nni.methods.mcmsh`, self-supervised), BTH
(:mod:`avnas_nni.methods.bth`, self-supervised), DKPH (:mod:`avnas_nni.methods.dkph`, self-supervised), SSTH
(:mod:`avnas_nni.methods.ssth`, self-supervised), ConMH (:mod:`avnas_nni.methods.conmh`, self-supervised), DSVH
(:mod:`avnas_nni.methods.dsvh`, supervised), SRH (:mod:`avnas_nni.methods.srh`, supervised), AVH
(:mod:`avnas_nni.methods.avh`, supervised), AVHash (:mod:`avnas_nni.methods.avhash`, supervised). Every method but
AVHash reads the visual features only (its paper's input); the self-supervised ones train without labels. DSVH is a
feature-level adaptation: its raw-frame 3D CNN becomes a 1D ResNet over the frame features.
"""

from __future__ import annotations

from typing import Any

from avnas_nni.errors import SettingsError
from avnas_nni.methods.avh import AVH
from avnas_nni.methods.avhash import AVHash
from avnas_nni.methods.base import HashingMethod, MethodModule
from avnas_nni.methods.bth import BTH
from avnas_nni.methods.conmh import ConMH
from avnas_nni.methods.dkph import DKPH
from avnas_nni.methods.dsvh import DSVH
from avnas_nni.methods.mcmsh import MCMSH
from avnas_nni.methods.srh import SRH
from avnas_nni.methods.ssth import SSTH

__all__ = ["METHODS", "HashingMethod", "MethodModule", "AVH", "AVHash", "BTH", "ConMH", "DKPH", "DSVH", "MCMSH",
           "SRH", "SSTH", "build_method"]

#: Methods by registry name, in the order of the paper's Table 2.
METHODS: dict[str, type[HashingMethod]] = {
    cls.name: cls for cls in (MCMSH, BTH, DKPH, SSTH, ConMH, DSVH, SRH, AVH, AVHash)
}


def build_method(name: str, **kwargs: Any) -> HashingMethod:
    """A fresh network of method ``name`` (``dim``, ``length``, ``bits`` and the method's own arguments).

    Raises
    ------
    SettingsError
        For an unknown name or arguments the method does not take.
    """
    if name not in METHODS:
        raise SettingsError(f"unknown method {name!r}; expected one of {sorted(METHODS)}")
    try:
        return METHODS[name](**kwargs)
    except TypeError as exc:
        raise SettingsError(f"method {name!r}: {exc}") from None
