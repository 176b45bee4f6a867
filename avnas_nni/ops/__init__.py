"""Operators of AV-NAS (paper Table 1) and the selective scan they share.

Importing this package registers every operator; build them with :func:`build_op`::

    from avnas_nni.ops import build_op, op_names
    op_names("M")                      # ['FFN', 'MLP', 'Conv', 'SelfAttention', 'SelfSSM', 'Skip']
    conv = build_op("M", "Conv", 768, kernel_size=4)

This package imports torch only (and numba, lazily, on the first CPU kernel call: :mod:`.scan_cpu`, :mod:`.conv_cpu`).
"""

from . import attention, binary, conv_cpu, dropout, fusion, interaction, mamba, scan_cpu, sequence, unary
from .attention import MultiheadAttention
from .binary import Add, Hadamard
from .dropout import Dropout
from .fusion import GatedAttention
from .interaction import CrossAttention, CrossSSM
from .mamba import Mamba, ResidualMamba
from .registry import KINDS, OPS, PAPER_ORDER, UnknownOpError, build_op, op_names, register
from .scan import cuda_scan_available, selective_scan, selective_scan_fused, selective_scan_torch
from .sequence import FFN, MLP, Conv, SelfAttention, SelfSSM, Skip, resolve_num_heads
from .unary import LayerNorm, SiLU

__all__ = [
    "Add",
    "Conv",
    "CrossAttention",
    "CrossSSM",
    "Dropout",
    "FFN",
    "GatedAttention",
    "Hadamard",
    "KINDS",
    "LayerNorm",
    "MLP",
    "Mamba",
    "MultiheadAttention",
    "OPS",
    "PAPER_ORDER",
    "ResidualMamba",
    "SelfAttention",
    "SelfSSM",
    "SiLU",
    "Skip",
    "UnknownOpError",
    "attention",
    "binary",
    "build_op",
    "conv_cpu",
    "cuda_scan_available",
    "dropout",
    "fusion",
    "interaction",
    "mamba",
    "op_names",
    "register",
    "resolve_num_heads",
    "scan_cpu",
    "selective_scan",
    "selective_scan_fused",
    "selective_scan_torch",
    "sequence",
    "unary",
]
