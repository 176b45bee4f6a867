"""The paper's expert networks as samples of :class:`~search_spaces.avnas.AVNASSpace`.

Each expert is a choice per cell (label → candidate name) plus the space settings it needs, so
``AVNASSpace(**expert.space_kwargs).freeze(expert.sample())`` is that network. Where the paper does not
say which I/F/T an expert uses, the expert keeps its own family (CrossAttention/SelfAttention for the
Transformers, CrossSSM/SelfSSM for Mamba) and fuses by Add.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from avnas_nni.errors import SettingsError

from .avnas import MODALITIES

__all__ = ["Expert", "EXPERTS", "TRANSFORMER_ENCODER", "MAMBA_ENCODER", "get_expert", "single_modality"]

#: Eq. 6–7: E1 = LN ∘ Down(MLP ∘ Skip ∘ SelfAttention ∘ Up(X) + Skip ∘ Up(X)), E2 = LN(FFN(X) + X).
TRANSFORMER_ENCODER = {"M1": "SelfAttention", "U1": "Skip", "M2": "MLP", "U2": "Skip", "D1": "Add",
                       "U3": "LayerNorm", "M3": "FFN", "D2": "Add", "U4": "LayerNorm"}
#: Eq. 9–10: E1 = Skip ∘ Down((SSM ∘ SiLU ∘ Conv_k ∘ Up(X)) ⊗ (SiLU ∘ Up(X))), E2 = LN(Skip(X) + X).
MAMBA_ENCODER = {"M1": "Conv", "U1": "SiLU", "M2": "SelfSSM", "U2": "SiLU", "D1": "Hadamard",
                 "U3": "Skip", "M3": "Skip", "D2": "Add", "U4": "LayerNorm"}


@dataclass(frozen=True)
class Expert:
    """An expert-designed network expressed in the space."""

    name: str
    encoder: dict[str, str]
    tail: dict[str, str]
    space_kwargs: dict[str, Any] = field(default_factory=dict)

    def sample(self, modalities: tuple[str, ...] = MODALITIES) -> dict[str, str]:
        """The full sample (label → choice) for a space over ``modalities``."""
        sample = {f"{m}/{cell}": op for m in modalities for cell, op in self.encoder.items()}
        if len(modalities) == 2:
            return sample | {k: v for k, v in self.tail.items() if k != "SF"}
        return sample | {"SF": self.tail["SF"], "T": self.tail["T"]}


_ATTENTION_TAIL = {"I1": "CrossAttention", "I2": "CrossAttention", "F": "Add", "T": "SelfAttention",
                   "SF": "SelfAttention"}
_SSM_TAIL = {"I1": "CrossSSM", "I2": "CrossSSM", "F": "Add", "T": "SelfSSM", "SF": "SelfSSM"}

EXPERTS: dict[str, Expert] = {
    # Table 3 "Transformer": a standard post-LN Transformer layer per modality (no Up/Down).
    "transformer": Expert("transformer", TRANSFORMER_ENCODER, _ATTENTION_TAIL, {"up_down": False}),
    # Table 3 "Transformer+": Eq. 6–8 with the Up/Down projections.
    "transformer_plus": Expert("transformer_plus", TRANSFORMER_ENCODER, _ATTENTION_TAIL),
    "mamba": Expert("mamba", MAMBA_ENCODER, _SSM_TAIL),
}


def get_expert(name: str) -> Expert:
    """Return the expert called ``name`` (``transformer``, ``transformer_plus``, ``mamba``)."""
    try:
        return EXPERTS[name]
    except KeyError:
        raise SettingsError(f"unknown expert {name!r}; expected one of {sorted(EXPERTS)}") from None


def single_modality(sample: dict[str, Any], modality: str, self_fusion: str = "SelfAttention") -> dict[str, Any]:
    """Turn an audio-visual sample into its single-modality variant (paper Table 2, lines 21–22).

    The other branch is removed and the fusion (I1, I2, F) is replaced by the self-fusion cell ``SF``;
    the kept encoder and T are unchanged.
    """
    if modality not in MODALITIES:
        raise SettingsError(f"modality: expected one of {MODALITIES}, got {modality!r}")
    kept = {k: v for k, v in sample.items() if k.startswith(f"{modality}/") or k == "T"}
    return kept | {"SF": self_fusion}
