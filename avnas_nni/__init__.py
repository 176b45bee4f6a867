"""avnas-nni: AV-NAS (SIGIR 2025) audio-visual neural architecture search for video hashing, on NNI.

Subpackages: :mod:`avnas_nni.ops` (Table 1 operators, selective scan), :mod:`avnas_nni.data` (feature layout,
synthetic set, triplets), :mod:`avnas_nni.loss`, :mod:`avnas_nni.codes`, :mod:`avnas_nni.metrics`.
The search spaces live in the top-level ``search_spaces`` package and the strategies in ``strategies``.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
