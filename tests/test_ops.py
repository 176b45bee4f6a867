"""The operators of paper Table 1 and their registry."""

from __future__ import annotations

import math

import pytest
import torch

from avnas_nni.ops import (
    OPS,
    CrossAttention,
    CrossSSM,
    Dropout,
    GatedAttention,
    Mamba,
    MultiheadAttention,
    ResidualMamba,
    SelfAttention,
    SelfSSM,
    UnknownOpError,
    build_op,
    mamba,
    op_names,
    register,
    scan,
)
from avnas_nni.ops.conv_cpu import causal_conv_fused
from avnas_nni.ops.mamba import CausalDepthwiseConv1d

DIM = 24  # 12 heads divide it
BATCH, LENGTH = 2, 9
TWO_INPUT_KINDS = {"D", "I", "F"}
ALL_OPS = [(kind, name) for kind in OPS for name in op_names(kind)]

PAPER_NAMES = {
    "M": ["FFN", "MLP", "Conv", "SelfAttention", "SelfSSM", "Skip"],
    "U": ["SiLU", "LayerNorm", "Skip"],
    "D": ["Add", "Hadamard"],
    "I": ["CrossAttention", "CrossSSM"],
    "F": ["Add", "GatedAttention"],
    "T": ["SelfAttention", "SelfSSM"],
}


def run_op(op, kind, x, y):
    return op(x, y) if kind in TWO_INPUT_KINDS else op(x)


def inputs(dtype=torch.float32, seed=0, length=LENGTH):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, length, DIM, generator=gen, dtype=dtype)
    y = torch.randn(BATCH, length, DIM, generator=gen, dtype=dtype)
    return x, y


REAL_SELECTIVE_SCAN = scan.selective_scan


def bump():
    """A random change of one time step (not constant over channels: LayerNorm would erase that)."""
    return torch.randn(DIM, generator=torch.Generator().manual_seed(11))


class RecordingScan:
    """Stands in for ``scan.selective_scan``: records each call, can replace chosen calls' outputs."""

    def __init__(self, zero_calls=()):
        self.calls = []
        self.zero_calls = set(zero_calls)  # call indices (within one forward) whose output is zeroed

    def __call__(self, u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
        self.calls.append({"u": u, "delta": delta, "A": A, "B": B, "C": C, "D": D})
        out = REAL_SELECTIVE_SCAN(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
        return torch.zeros_like(out) if (len(self.calls) - 1) % 2 in self.zero_calls else out


# ---------------------------------------------------------------- registry


def test_op_names_are_the_papers():
    assert {kind: op_names(kind) for kind in OPS} == PAPER_NAMES


def test_shared_classes_across_kinds():
    assert OPS["M"]["Skip"] is OPS["U"]["Skip"]
    assert OPS["M"]["SelfAttention"] is OPS["T"]["SelfAttention"] is SelfAttention
    assert OPS["D"]["Add"] is OPS["F"]["Add"]
    assert OPS["T"]["SelfSSM"] is ResidualMamba and OPS["M"]["SelfSSM"] is SelfSSM


def test_unknown_kind_and_name_errors_list_valid_names():
    with pytest.raises(KeyError) as err:
        build_op("X", "FFN", DIM)
    assert str(err.value) == "unknown cell kind 'X'; valid kinds: M, U, D, I, F, T"
    with pytest.raises(ValueError) as err:
        build_op("M", "Attention", DIM)
    message = str(err.value)
    assert "'Attention'" in message and "FFN, MLP, Conv, SelfAttention, SelfSSM, Skip" in message
    assert "\n" not in message and isinstance(err.value, UnknownOpError)
    with pytest.raises(KeyError):
        op_names("Z")


@pytest.mark.parametrize("dim", [0, -3, 2.5, True, "8"])
def test_bad_dim_raises(dim):
    with pytest.raises(ValueError, match="dim must be a positive int"):
        build_op("M", "FFN", dim)


def test_register_refuses_a_second_class_under_a_taken_name():
    with pytest.raises(ValueError, match="already registered"):

        @register("U", "SiLU")
        class OtherSiLU(torch.nn.Module):
            pass

    assert OPS["U"]["SiLU"].__name__ == "SiLU"


def test_settings_are_filtered_per_op():
    settings = {"kernel_size": 5, "num_heads": 4, "d_state": 8, "dropout": 0.3, "dt_rank": 3, "expand": 2}
    assert build_op("U", "SiLU", 64, kernel_size=3)(torch.ones(1, 1, 64)).shape == (1, 1, 64)
    for kind, name in ALL_OPS:
        build_op(kind, name, DIM, **settings)  # every op tolerates settings that are not its own
    assert build_op("M", "Conv", DIM, **settings).conv.kernel_size == (5,)
    assert build_op("M", "FFN", DIM, **settings).dropout.p == 0.3
    assert build_op("M", "SelfAttention", DIM, **settings).attn.num_heads == 4
    ssm = build_op("M", "SelfSSM", DIM, **settings)
    assert ssm.A_log.shape == (DIM, 8) and ssm.x_proj.out_features == 3 + 2 * 8
    assert build_op("I", "CrossSSM", DIM, **settings).d_inner == 2 * DIM
    # the T block keeps Mamba's own expand and dt_rank: a shared dict cannot change them
    mixer = build_op("T", "SelfSSM", DIM, **settings).mixer
    assert mixer.d_inner == 2 * DIM and mixer.dt_rank == math.ceil(DIM / 16) and mixer.d_state == 8


def test_a_setting_no_operator_takes_is_an_error():
    with pytest.raises(ValueError, match=r"build_op M/FFN: no operator takes the setting\(s\) \['d_stat'\]"):
        build_op("M", "FFN", DIM, dropout=0.1, d_stat=8)  # a typo of d_state
    with pytest.raises(ValueError, match="kernal_size"):  # even for an operator without settings
        build_op("U", "SiLU", DIM, kernal_size=3)


# ---------------------------------------------------------------- every op


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind,name", ALL_OPS)
def test_every_op_shape_dtype_finite_and_gradients(kind, name, dtype):
    torch.manual_seed(0)
    op = build_op(kind, name, DIM).to(dtype).eval()  # eval: dropout off, so every gradient is deterministic
    x, y = inputs(dtype)
    x.requires_grad_()
    y.requires_grad_()
    out = run_op(op, kind, x, y)
    assert out.shape == (BATCH, LENGTH, DIM)
    assert out.dtype == dtype
    assert torch.isfinite(out).all()
    weight = torch.randn(out.shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
    (out * weight).sum().backward()  # a random readout: LayerNorm's plain sum has zero gradient
    for param_name, param in op.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, f"{kind}/{name}: no gradient to {param_name}"
    assert x.grad is not None and x.grad.abs().sum() > 0
    if kind in TWO_INPUT_KINDS:
        assert y.grad is not None and y.grad.abs().sum() > 0


def test_sequence_ops_compute_what_the_paper_says():
    x, _ = inputs()
    ffn = build_op("M", "FFN", DIM).eval()
    assert ffn.fc1.out_features == 4 * DIM and ffn.dropout.p == 0.1
    torch.testing.assert_close(ffn(x), ffn.fc2(torch.relu(ffn.fc1(x))))
    mlp = build_op("M", "MLP", DIM).eval()
    assert mlp.dropout.p == 0.1
    torch.testing.assert_close(mlp(x), mlp.fc(x))
    assert build_op("M", "Skip", DIM)(x) is x
    torch.testing.assert_close(build_op("U", "SiLU", DIM)(x), x * torch.sigmoid(x))
    ln = build_op("U", "LayerNorm", DIM)
    torch.testing.assert_close(ln(x), torch.nn.functional.layer_norm(x, (DIM,)))
    a, b = inputs(seed=2)
    torch.testing.assert_close(build_op("D", "Add", DIM)(a, b), a + b)
    torch.testing.assert_close(build_op("D", "Hadamard", DIM)(a, b), a * b)
    attn = build_op("I", "CrossAttention", DIM).eval()
    torch.testing.assert_close(attn(a, b), attn.attn(a, b, b)[0])


# ---------------------------------------------------------------- attention heads


@pytest.mark.parametrize("dim,heads", [(24, 12), (768, 12), (20, 10), (16, 8), (7, 7), (13, 1), (22, 11)])
def test_default_head_rule(dim, heads):
    assert build_op("M", "SelfAttention", dim).attn.num_heads == heads
    assert build_op("I", "CrossAttention", dim).attn.num_heads == heads


def test_explicit_heads_must_divide_dim():
    assert SelfAttention(24, num_heads=6).attn.num_heads == 6
    with pytest.raises(ValueError) as err:
        SelfAttention(24, num_heads=5)
    assert str(err.value) == "SelfAttention: num_heads=5 does not divide dim=24"
    with pytest.raises(ValueError, match="CrossAttention: num_heads=7 does not divide dim=24"):
        CrossAttention(24, num_heads=7)


@pytest.mark.parametrize("dim,self_attention", [(48, True), (96, False), (768, True)])
def test_attention_matches_torchs_module_forward_and_backward(dim, self_attention):
    """The batched-matmul path equals torch.nn.MultiheadAttention with the same weights, outputs and gradients."""
    torch.manual_seed(0)
    ours = MultiheadAttention(dim, 12)
    ref = torch.nn.MultiheadAttention(dim, 12, batch_first=True)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(3, 25, dim, requires_grad=True)
    y = x if self_attention else torch.randn(3, 19, dim, requires_grad=True)
    results = []
    for module in (ours, ref):
        out = module(x, y, y, need_weights=False)[0]
        results.append((out, *torch.autograd.grad(out.square().sum(), [x, module.in_proj_weight])))
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    weights = ours(x, y, y)[1]  # weights asked for: torch's own path, which returns them
    assert weights is not None and weights.shape == (3, 25, y.shape[1])


def test_attention_dropout_acts_on_the_weights_while_training_only():
    torch.manual_seed(0)
    attn = MultiheadAttention(24, 6, dropout=0.5)
    x = torch.randn(4, 25, 24)
    attn.eval()
    plain = attn(x, x, x, need_weights=False)[0]
    attn.train()
    dropped = attn(x, x, x, need_weights=False)[0]
    assert not torch.allclose(plain, dropped)
    attn.dropout = 0.0
    torch.testing.assert_close(attn(x, x, x, need_weights=False)[0], plain)


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_keeps_1_minus_p_scales_the_kept_and_follows_the_torch_seed(p):
    drop = Dropout(p).train()
    x = torch.ones(200, 25, 40, requires_grad=True)
    torch.manual_seed(7)
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.01  # 200,000 draws: 4+ standard deviations
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / (1 - p)))
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach())  # the gradient is the same mask and scale
    torch.manual_seed(7)
    assert torch.equal(drop(x), y)  # a seed repeats the masks
    assert not torch.equal(drop(x), y)  # the next call draws new ones
    drop.eval()
    assert drop(x) is x


def test_dropout_masks_are_independent_across_elements_and_seeds():
    drop = Dropout(0.5).train()
    x = torch.ones(400_000)
    torch.manual_seed(1)
    a, b = drop(x) != 0, drop(x) != 0
    for pair in (a[:-1] & a[1:], a[:-7] & a[7:], a & b):  # neighbours, a stride, two calls: P(both kept) = 1/4
        assert abs(pair.float().mean().item() - 0.25) < 0.005  # 400,000 draws: 7 standard deviations


def test_dropout_after_relu_is_relu_then_dropout_with_the_same_masks_and_gradient():
    drop = Dropout(0.3).train()
    x = torch.randn(50, 25, 40, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(3)
    fused = drop.after_relu(x)
    torch.manual_seed(3)
    plain = drop(torch.relu(x))
    torch.testing.assert_close(fused, plain)
    (grad,) = torch.autograd.grad(fused.sum(), [x])
    torch.testing.assert_close(grad, (fused.detach() > 0).double() / 0.7)
    drop.eval()
    torch.testing.assert_close(drop.after_relu(x), torch.relu(x))


def test_ffn_and_mlp_use_the_fast_dropout():
    assert isinstance(build_op("M", "FFN", DIM).dropout, Dropout)
    assert isinstance(build_op("M", "MLP", DIM).dropout, Dropout)


# ---------------------------------------------------------------- Conv


@pytest.mark.parametrize("kernel_size", [3, 4, 5])
def test_conv_is_causal_depthwise_and_keeps_length(kernel_size):
    conv = build_op("M", "Conv", DIM, kernel_size=kernel_size)
    assert conv.conv.weight.shape == (DIM, 1, kernel_size) and conv.conv.bias is not None
    x, _ = inputs(length=12)
    base = conv(x)
    assert base.shape == x.shape
    t0 = 5
    x2 = x.clone()
    x2[:, t0] += bump()
    changed = (conv(x2) - base).abs().amax(dim=(0, 2)) > 0
    # output t sees exactly inputs t-k+1..t
    expected = torch.tensor([t0 <= t <= t0 + kernel_size - 1 for t in range(12)])
    assert torch.equal(changed, expected)
    # and channel c only reads channel c
    x3 = x.clone()
    x3[:, :, 0] += 1.0
    assert torch.equal(conv(x3)[:, :, 1:], base[:, :, 1:])


@pytest.mark.parametrize("kernel_size,length,bias", [(1, 6, True), (3, 12, True), (4, 25, False), (5, 3, True)])
def test_fused_conv_equals_torchs_conv_forward_and_backward(kernel_size, length, bias):
    """The numba kernels against torch's Conv1d, float64, lengths shorter and longer than the kernel."""
    conv = CausalDepthwiseConv1d(DIM, kernel_size, bias=bias).double()
    x = torch.randn(3, length, DIM, dtype=torch.float64).transpose(1, 2).requires_grad_()  # as the operators pass it
    params = [x, conv.weight] + ([conv.bias] if bias else [])
    got = causal_conv_fused(x, conv.weight, conv.bias)
    want = torch.nn.Conv1d.forward(conv, x)[..., :length]
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)
    grads_got = torch.autograd.grad(got.square().sum(), params)
    grads_want = torch.autograd.grad(want.square().sum(), params)
    for g, w in zip(grads_got, grads_want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-10, rtol=1e-10)
    leaves = [t.detach().clone().requires_grad_() for t in params]
    assert torch.autograd.gradcheck(lambda x_, w_, *b_: causal_conv_fused(x_, w_, b_[0] if b_ else None), leaves)


def test_conv_uses_the_kernels_on_one_cpu_thread_and_torch_otherwise(monkeypatch):
    calls = []
    monkeypatch.setattr(mamba, "causal_conv_fused", lambda *a: calls.append("fused") or causal_conv_fused(*a))
    conv = CausalDepthwiseConv1d(DIM, 4)
    x = torch.randn(2, DIM, 7)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = conv(x)
        torch.set_num_threads(2)
        two = conv(x)
    finally:
        torch.set_num_threads(threads)
    assert calls == ["fused"]
    torch.testing.assert_close(one, two, atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="expected x \\(batch, channels, L\\)"):
        causal_conv_fused(torch.zeros(2, DIM + 1, 7), conv.weight, conv.bias)


def test_conv_rejects_bad_kernel():
    with pytest.raises(ValueError, match="kernel_size must be an int >= 1"):
        build_op("M", "Conv", DIM, kernel_size=0)


# ---------------------------------------------------------------- GatedAttention


def test_gated_attention_rho_starts_at_half_stays_in_unit_interval_and_learns():
    gate = GatedAttention(DIM)
    x, y = inputs()
    assert gate.rho.item() == pytest.approx(0.5)
    torch.testing.assert_close(gate(x, y), 0.5 * x + 0.5 * y)
    optimizer = torch.optim.SGD(gate.parameters(), lr=1.0)
    seen = []
    for _ in range(20):  # push rho up hard: it must approach 1 without leaving (0, 1)
        optimizer.zero_grad()
        (-(gate(x, y) * (x - y)).mean()).backward()
        optimizer.step()
        seen.append(gate.rho.item())
    assert all(0.0 < r < 1.0 for r in seen)
    assert seen[-1] > 0.6 and seen == sorted(seen)
    torch.testing.assert_close(gate(x, y), gate.rho * x + (1 - gate.rho) * y)


# ---------------------------------------------------------------- SelfSSM


def test_self_ssm_parameters_and_causality():
    ssm = SelfSSM(DIM)
    assert ssm.x_proj.weight.shape == (4 + 2 * 16, DIM) and ssm.x_proj.bias is None
    assert ssm.dt_proj.weight.shape == (DIM, 4) and ssm.dt_proj.bias is not None
    torch.testing.assert_close(ssm.A_log, torch.log(torch.arange(1.0, 17.0)).expand(DIM, 16))
    torch.testing.assert_close(ssm.D, torch.ones(DIM))
    dt0 = torch.nn.functional.softplus(ssm.dt_proj.bias)
    assert dt0.min() >= 1e-4 and dt0.max() <= 0.1 + 1e-6
    x, _ = inputs(length=12)
    base = ssm(x)
    x2 = x.clone()
    x2[:, 6] += bump()
    diff = (ssm(x2) - base).abs().amax(dim=(0, 2))
    assert (diff[:6] == 0).all() and (diff[6:] > 0).all()


def test_self_ssm_reads_delta_b_c_from_x_through_the_one_scan(monkeypatch):
    recorder = RecordingScan()
    monkeypatch.setattr(scan, "selective_scan", recorder)
    ssm = SelfSSM(DIM)
    x, _ = inputs()
    ssm(x)
    (call,) = recorder.calls
    torch.testing.assert_close(call["u"], x.transpose(1, 2))
    dt, B, C = torch.split(ssm.x_proj(x), [4, 16, 16], dim=-1)
    torch.testing.assert_close(call["B"], B.transpose(1, 2))
    torch.testing.assert_close(call["C"], C.transpose(1, 2))
    torch.testing.assert_close(call["A"], -torch.exp(ssm.A_log))
    assert call["D"] is ssm.D


# ---------------------------------------------------------------- CrossSSM


def test_cross_ssm_is_controlled_by_y_through_delta_b_c(monkeypatch):
    torch.manual_seed(0)
    cross = CrossSSM(DIM).eval()
    x, y = inputs()
    _, y_other = inputs(seed=5)
    recorder = RecordingScan()
    monkeypatch.setattr(scan, "selective_scan", recorder)
    out = cross(x, y)
    out_other_y = cross(x, y_other)
    assert not torch.allclose(out, out_other_y)
    assert len(recorder.calls) == 4  # two scans per forward
    first, _, first_other, _ = recorder.calls
    # changing Y leaves the scanned input c_x alone and changes Δ, B, C
    torch.testing.assert_close(first["u"], first_other["u"])
    for field in ("delta", "B", "C"):
        assert not torch.allclose(first[field], first_other[field])
    # changing X leaves Δ, B, C alone
    x_other, _ = inputs(seed=7)
    cross(x_other, y)
    for field in ("delta", "B", "C"):
        torch.testing.assert_close(recorder.calls[4][field], first[field])
    assert not torch.allclose(recorder.calls[4]["u"], first["u"])
    # x_proj is the only parameter that reads c_y: zero it and the output no longer depends on Y
    with torch.no_grad():
        cross.x_proj.weight.zero_()
    torch.testing.assert_close(cross(x, y), cross(x, y_other))


def test_cross_ssm_backward_scan_runs_on_reversed_c_x_with_the_same_control(monkeypatch):
    cross = CrossSSM(DIM).eval()
    x, y = inputs()
    recorder = RecordingScan()
    monkeypatch.setattr(scan, "selective_scan", recorder)
    cross(x, y)
    forward_call, backward_call = recorder.calls
    torch.testing.assert_close(backward_call["u"], forward_call["u"].flip(-1))
    for field in ("delta", "B", "C"):  # Eq. 27 read literally: Δ, B, C are not reversed
        assert backward_call[field] is forward_call[field]
    torch.testing.assert_close(forward_call["A"], -torch.exp(cross.A1_log))
    torch.testing.assert_close(backward_call["A"], -torch.exp(cross.A2_log))
    assert forward_call["D"] is None and backward_call["D"] is None


def changed_times(cross, x, y, t0):
    """Per output time, whether bumping x at time t0 changes the output."""
    x2 = x.clone()
    x2[:, t0] += bump()
    return (cross(x2, y) - cross(x, y)).abs().amax(dim=(0, 2)) > 1e-7


def test_cross_ssm_reverse_path_sees_the_future(monkeypatch):
    torch.manual_seed(0)
    cross = CrossSSM(DIM).eval()
    x, y = inputs(length=12)
    t0, reach = 6, 4 - 1  # the causal conv on X lets time t see x at t-3..t
    times = torch.arange(12)
    # both paths: times before t0 change, which a causal (forward-only) scan cannot do
    assert changed_times(cross, x, y, t0)[:t0].all()
    # the forward (A1) path alone, backward scan output zeroed: strictly causal
    monkeypatch.setattr(scan, "selective_scan", RecordingScan(zero_calls={1}))
    assert torch.equal(changed_times(cross, x, y, t0), times >= t0)
    # the reverse (A2) path alone: output at t depends on x at times >= t - 3 only, and reaches back to 0
    monkeypatch.setattr(scan, "selective_scan", RecordingScan(zero_calls={0}))
    assert torch.equal(changed_times(cross, x, y, t0), times <= t0 + reach)


def test_cross_ssm_shapes_and_settings():
    cross = CrossSSM(DIM, expand=2, d_state=8, dt_rank=3)
    inner = 2 * DIM
    assert cross.in_proj_x.weight.shape == (3 * inner, DIM)
    assert cross.in_proj_y.weight.shape == (inner, DIM)
    assert cross.conv1d_x.weight.shape == (inner, 1, 4) and cross.conv1d_y.weight.shape == (inner, 1, 4)
    assert cross.x_proj.weight.shape == (3 + 16, inner) and cross.dt_proj.weight.shape == (inner, 3)
    assert cross.A1_log.shape == cross.A2_log.shape == (inner, 8)
    assert cross.out_proj.weight.shape == (DIM, inner)
    with pytest.raises(ValueError, match="CrossSSM: x and y must share"):
        cross(torch.zeros(2, 5, DIM), torch.zeros(2, 6, DIM))


# ---------------------------------------------------------------- Mamba / T = SelfSSM


def mamba_simple_shapes(d_model, d_state=16, d_conv=4, expand=2, prefix=""):
    """mamba-ssm mamba_simple.Mamba's parameters (bias=False, conv_bias=True), from its definition."""
    d_inner = expand * d_model
    dt_rank = math.ceil(d_model / 16)
    return {
        f"{prefix}in_proj.weight": (2 * d_inner, d_model),
        f"{prefix}conv1d.weight": (d_inner, 1, d_conv),
        f"{prefix}conv1d.bias": (d_inner,),
        f"{prefix}x_proj.weight": (dt_rank + 2 * d_state, d_inner),
        f"{prefix}dt_proj.weight": (d_inner, dt_rank),
        f"{prefix}dt_proj.bias": (d_inner,),
        f"{prefix}A_log": (d_inner, d_state),
        f"{prefix}D": (d_inner,),
        f"{prefix}out_proj.weight": (d_model, d_inner),
    }


@pytest.mark.parametrize("d_model", [24, 40])
def test_mamba_state_dict_is_mamba_simples(d_model):
    mamba = Mamba(d_model)
    shapes = {key: tuple(value.shape) for key, value in mamba.state_dict().items()}
    assert shapes == mamba_simple_shapes(d_model)
    foreign = {key: torch.randn(shape) for key, shape in mamba_simple_shapes(d_model).items()}
    mamba.load_state_dict(foreign, strict=True)
    torch.testing.assert_close(mamba.A_log, foreign["A_log"])


def test_residual_mamba_is_a_block_with_norm_and_mixer():
    block = build_op("T", "SelfSSM", DIM)
    shapes = {key: tuple(value.shape) for key, value in block.state_dict().items()}
    assert shapes == {
        **mamba_simple_shapes(DIM, prefix="mixer."),
        "norm.weight": (DIM,),
        "norm.bias": (DIM,),
    }
    assert isinstance(block.norm, torch.nn.LayerNorm) and isinstance(block.mixer, Mamba)
    torch.testing.assert_close(block.mixer.A_log, torch.log(torch.arange(1.0, 17.0)).expand(2 * DIM, 16))
    x, _ = inputs()
    with torch.no_grad():
        block.mixer.out_proj.weight.zero_()
    torch.testing.assert_close(block(x), x)  # residual: x + Mamba(LN(x))


def test_mamba_is_causal_and_uses_the_one_scan(monkeypatch):
    block = ResidualMamba(DIM)
    x, _ = inputs(length=12)
    recorder = RecordingScan()
    monkeypatch.setattr(scan, "selective_scan", recorder)
    base = block(x)
    assert len(recorder.calls) == 1 and recorder.calls[0]["D"] is block.mixer.D
    x2 = x.clone()
    x2[:, 6] += bump()
    diff = (block(x2) - base).abs().amax(dim=(0, 2))
    assert (diff[:6] == 0).all() and (diff[6:] > 0).all()
