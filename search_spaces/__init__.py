"""Search spaces of avnas-nni: the AV-NAS space, its presets and the paper's expert networks."""

from .avnas import MODALITIES, AVNASSpace, Encoder
from .experts import EXPERTS, MAMBA_ENCODER, TRANSFORMER_ENCODER, Expert, get_expert, single_modality
from .presets import CELL_KINDS, PRESETS, Candidate, get_preset
from .summary import cells, check_sample, count_architectures

__all__ = [
    "AVNASSpace", "Encoder", "MODALITIES", "PRESETS", "CELL_KINDS", "Candidate", "get_preset",
    "EXPERTS", "Expert", "get_expert", "single_modality", "TRANSFORMER_ENCODER", "MAMBA_ENCODER",
    "cells", "count_architectures", "check_sample",
]
