"""The AV-NAS search space: labels, size, expert networks, single-modality variants, the mixed supernet."""

from __future__ import annotations

import copy

import pytest
import torch
from nni.nas.oneshot.pytorch.strategy import DARTS
from nni.nas.oneshot.pytorch.supermodule.differentiable import DifferentiableMixedLayer

from avnas_nni.ops import OPS
from search_spaces import (
    EXPERTS,
    MAMBA_ENCODER,
    TRANSFORMER_ENCODER,
    AVNASSpace,
    cells,
    check_sample,
    count_architectures,
    get_expert,
    single_modality,
)

SMALL = {"dim": 24, "length": 6, "bits": 16}


def _inputs(batch: int = 3, length: int = 6, dim: int = 24, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, length, dim, generator=g), torch.randn(batch, length, dim, generator=g)


def test_paper_space_counts_the_papers_number():
    assert count_architectures(AVNASSpace(**SMALL)) == 78_364_164_096


def test_authors_space_count():
    # M: 8 candidates (Conv3/4/5 separate), U1/U2: SiLU|Skip, U3/U4: LayerNorm|Skip, D: 2; then I1, I2, F, T: 2 each.
    per_encoder = 8**3 * 2**4 * 2**2
    assert count_architectures(AVNASSpace(preset="authors", **SMALL)) == per_encoder**2 * 2**4 == 17_179_869_184


def test_cells_are_labelled_as_in_the_paper():
    table = cells(AVNASSpace(**SMALL))
    encoder = ["M1", "U1", "M2", "U2", "D1", "U3", "M3", "D2", "U4"]
    expected = [f"{m}/{c}" for m in ("visual", "audio") for c in encoder] + ["I1", "I2", "F", "T"]
    assert sorted(table) == sorted(expected)
    assert table["visual/M1"] == ["FFN", "MLP", "Conv", "SelfAttention", "SelfSSM", "Skip"]
    assert table["audio/U3"] == ["SiLU", "LayerNorm", "Skip"]
    assert table["visual/D2"] == ["Add", "Hadamard"]
    assert table["I1"] == table["I2"] == ["CrossAttention", "CrossSSM"]
    assert table["F"] == ["Add", "GatedAttention"]
    assert table["T"] == ["SelfAttention", "SelfSSM"]


def test_encoder_widths_follow_up_down():
    space = AVNASSpace(dim=24, length=6, bits=16, expand=2)
    # M1, U1, M2, U2, D1 work at e·d; U3, M3, D2, U4 at d.
    assert space.visual.up.out_features == 48 and space.visual.down.in_features == 48
    assert isinstance(space.visual.U3["LayerNorm"], torch.nn.LayerNorm)
    assert space.visual.U3["LayerNorm"].normalized_shape == (24,)
    assert space.visual.U1["LayerNorm"].normalized_shape == (48,)


@pytest.mark.parametrize("name", sorted(EXPERTS))
def test_each_expert_freezes_and_trains(name):
    expert = get_expert(name)
    space = AVNASSpace(**SMALL, **expert.space_kwargs)
    check_sample(space, expert.sample())
    net = space.freeze(expert.sample())
    visual, audio = _inputs()
    out = net(visual, audio)
    assert out.shape == (3, 16) and torch.isfinite(out).all() and out.abs().max() < 1
    out.pow(2).sum().backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)


def _op(kind: str, name: str) -> type:
    return OPS[kind][name]


@pytest.mark.parametrize("expert_name, encoder", [("transformer_plus", TRANSFORMER_ENCODER), ("mamba", MAMBA_ENCODER)])
def test_frozen_expert_cells_are_the_equations_ops(expert_name, encoder):
    expert = get_expert(expert_name)
    net = AVNASSpace(**SMALL, **expert.space_kwargs).freeze(expert.sample())
    kinds = {"M": ("M1", "M2", "M3"), "U": ("U1", "U2", "U3", "U4"), "D": ("D1", "D2")}
    for modality in ("visual", "audio"):
        enc = getattr(net, modality)
        for kind, roles in kinds.items():
            for role in roles:
                assert type(getattr(enc, role)) is _op(kind, encoder[role]), (modality, role)
    if expert_name == "transformer_plus":
        # Eq. 6: LN ∘ Down(MLP ∘ Skip ∘ SelfAttention ∘ Up(X) + Skip ∘ Up(X)); Eq. 7: LN(FFN(X) + X)
        assert [type(getattr(net.visual, r)).__name__ for r in ("M1", "M2", "D1", "U3", "M3", "D2", "U4")] == [
            _op("M", "SelfAttention").__name__, _op("M", "MLP").__name__, _op("D", "Add").__name__,
            _op("U", "LayerNorm").__name__, _op("M", "FFN").__name__, _op("D", "Add").__name__,
            _op("U", "LayerNorm").__name__]
        assert isinstance(net.visual.up, torch.nn.Linear)
    else:
        # Eq. 9: (SSM ∘ SiLU ∘ Conv_k ∘ Up(X)) ⊗ (SiLU ∘ Up(X)); Eq. 10: LN(Skip(X) + X)
        assert type(net.visual.D1) is _op("D", "Hadamard") and type(net.visual.M3) is _op("M", "Skip")
        assert type(net.T) is _op("T", "SelfSSM") and type(net.I1) is _op("I", "CrossSSM")


def test_plain_transformer_is_a_standard_post_ln_layer():
    """Without Up/Down, Eq. 6–7 reduce to LN(X + MLP(MHA(X))) then LN(X' + FFN(X'))."""
    expert = get_expert("transformer")
    net = AVNASSpace(**SMALL, **expert.space_kwargs).freeze(expert.sample()).eval()
    enc = net.visual
    assert isinstance(enc.up, torch.nn.Identity) and isinstance(enc.down, torch.nn.Identity)
    x, _ = _inputs()
    x1 = enc.U3(enc.M2(enc.M1(x)) + x)
    expected = enc.U4(enc.M3(x1) + x1)
    torch.testing.assert_close(enc(x), expected)


def test_frozen_network_is_deterministic_in_eval_and_depends_on_both_modalities():
    expert = get_expert("transformer_plus")
    net = AVNASSpace(**SMALL).freeze(expert.sample()).eval()
    visual, audio = _inputs()
    out = net(visual, audio)
    torch.testing.assert_close(out, net(visual, audio))
    assert not torch.allclose(out, net(visual, audio + 1.0))
    assert not torch.allclose(out, net(visual + 1.0, audio))


@pytest.mark.parametrize("modality", ["visual", "audio"])
@pytest.mark.parametrize("self_fusion", ["SelfAttention", "SelfSSM"])
def test_single_modality_variant(modality, self_fusion):
    sample = single_modality(get_expert("mamba").sample(), modality, self_fusion)
    space = AVNASSpace(**SMALL, modalities=(modality,))
    assert set(cells(space)) == set(sample)
    check_sample(space, sample)
    net = space.freeze(sample)
    visual, audio = _inputs()
    out = net(visual, audio)
    assert out.shape == (3, 16)
    other = {"visual": (visual, audio + 5.0), "audio": (visual + 5.0, audio)}[modality]
    torch.testing.assert_close(net.eval()(visual, audio), net(*other))  # the other modality is ignored
    assert count_architectures(space) == (6**3 * 3**4 * 2**2) * 2 * 2


def test_supernet_forward_backward_at_paper_width():
    """Every cell mixed (NNI's DARTS mutation) at d = 768, m = 25, B = 2, on CPU."""
    torch.manual_seed(0)
    space = AVNASSpace(dim=768, length=25, bits=64)
    supernet = DARTS().mutate_model(space)
    mixed = [m for m in supernet.modules() if isinstance(m, DifferentiableMixedLayer)]
    assert len(mixed) == 2 * 9 + 4
    visual, audio = torch.randn(2, 25, 768), torch.randn(2, 25, 768)
    out = supernet(visual, audio)
    assert out.shape == (2, 64) and torch.isfinite(out).all()
    out.sum().backward()
    for layer in mixed:
        alpha = next(layer.arch_parameters())
        assert alpha.grad is not None and torch.isfinite(alpha.grad).all(), layer.label
        assert alpha.grad.abs().sum() > 0, layer.label


def test_freeze_keeps_supernet_weights_when_copied():
    space = AVNASSpace(**SMALL)
    sample = get_expert("transformer_plus").sample()
    frozen = copy.deepcopy(space).freeze(sample)
    torch.testing.assert_close(frozen.hash.weight, space.hash.weight)


def test_bad_settings_and_inputs():
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        AVNASSpace(**SMALL, preset="nope")
    with pytest.raises(ValueError, match="modalities"):
        AVNASSpace(**SMALL, modalities=("video",))
    with pytest.raises(ValueError, match="bits"):
        AVNASSpace(dim=24, length=6, bits=0)
    net = AVNASSpace(**SMALL).freeze(get_expert("mamba").sample())
    visual, audio = _inputs()
    with pytest.raises(ValueError, match=r"audio features: expected shape \(batch, 6, 24\)"):
        net(visual, audio[:, :5])


def test_check_sample_errors_name_the_cell():
    space = AVNASSpace(**SMALL)
    sample = get_expert("mamba").sample()
    with pytest.raises(ValueError, match="arch.json: missing choice for cell.*'T'"):
        check_sample(space, {k: v for k, v in sample.items() if k != "T"}, "arch.json")
    with pytest.raises(ValueError, match="'visual/M9'.*not in this space"):
        check_sample(space, sample | {"visual/M9": "FFN"})
    with pytest.raises(ValueError, match="cell 'F' has no candidate 'Concat'"):
        check_sample(space, sample | {"F": "Concat"})
