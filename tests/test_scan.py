"""The selective scan: own PyTorch scan vs the plain reference loop, gradients, dispatch, and the CUDA path."""

from __future__ import annotations

import itertools
import logging
import sys

import numpy as np
import pytest
import torch

from avnas_nni.ops import scan, scan_cpu
from avnas_nni.ops._numba import exp_into
from avnas_nni.ops.scan import (
    cuda_scan_available,
    selective_scan,
    selective_scan_fused,
    selective_scan_ref,
    selective_scan_torch,
)
from avnas_nni.ops.scan_cpu import fused_scan_available


def naive_scan(*tensors, **kwargs):
    """The library's plain reference scan (mamba-ssm's ``selective_scan_ref`` way) run in float64: the oracle."""
    tensors = [t.double() for t in tensors]
    kwargs = {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    return selective_scan_ref(*tensors, **kwargs)


def test_reference_scan_by_hand():
    # One channel, one state, two steps: h1 = d1 B1 u1, y1 = C1 h1; h2 = exp(d2 A) h1 + d2 B2 u2, y2 = C2 h2;
    # then y + D u, times silu(z).
    u, delta, B, C, z = (torch.tensor([[[a, b]]], dtype=torch.float64) for a, b in
                         ((1.0, 2.0), (0.5, 0.25), (3.0, -1.0), (2.0, 4.0), (0.0, 1.0)))
    A, D = torch.tensor([[-2.0]], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64)
    h1 = 0.5 * 3.0 * 1.0
    h2 = torch.exp(torch.tensor(0.25 * -2.0)).item() * h1 + 0.25 * -1.0 * 2.0
    want = torch.tensor([[[(2.0 * h1 + 0.5) * 0.0, (4.0 * h2 + 1.0) * torch.nn.functional.silu(torch.tensor(1.0))
                           .item()]]], dtype=torch.float64)
    torch.testing.assert_close(selective_scan_ref(u, delta, A, B, C, D=D, z=z), want)
    # groups: a (batch, G, N, L) B/C with G = 1 is the (batch, N, L) one
    torch.testing.assert_close(selective_scan_ref(u, delta, A, B[:, None], C[:, None], D=D, z=z), want)


def make_inputs(batch=3, dim=6, length=13, d_state=4, groups=None, dtype=torch.float32, seed=0):
    """Moderate random scan inputs; groups=None gives (batch, N, L) B and C, an int (batch, G, N, L)."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype)

    bc_shape = (batch, d_state, length) if groups is None else (batch, groups, d_state, length)
    return {
        "u": rand(batch, dim, length),
        "delta": 0.5 * torch.rand(batch, dim, length, generator=gen, dtype=dtype),
        "A": -torch.exp(0.5 * rand(dim, d_state)),
        "B": rand(*bc_shape),
        "C": rand(*bc_shape),
        "D": rand(dim),
        "z": rand(batch, dim, length),
        "delta_bias": 0.3 * rand(dim),
    }


OPTION_COMBOS = list(itertools.product([False, True], repeat=4))


@pytest.mark.parametrize("use_D,use_z,use_bias,softplus", OPTION_COMBOS)
@pytest.mark.parametrize("groups", [None, 1, 3])
def test_own_scan_matches_naive_loop_fp32(use_D, use_z, use_bias, softplus, groups):
    inp = make_inputs(groups=groups)
    kwargs = {
        "D": inp["D"] if use_D else None,
        "z": inp["z"] if use_z else None,
        "delta_bias": inp["delta_bias"] if use_bias else None,
        "delta_softplus": softplus,
    }
    got = selective_scan_torch(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], **kwargs)
    want = naive_scan(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], **kwargs)
    assert got.dtype == torch.float32 and got.shape == inp["u"].shape
    torch.testing.assert_close(got, want.float(), atol=1e-5, rtol=1e-5)
    # the dispatcher on CPU runs one of the own scans (the fused one for (batch, N, L) B and C on one thread)
    dispatched = selective_scan(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], **kwargs)
    torch.testing.assert_close(dispatched, want.float(), atol=1e-5, rtol=1e-5)


def test_scan_has_memory_across_time():
    """A single impulse at t=0 decays through the state: y_t = C·exp(A·Σdelta)·B·delta_0·u_0 for t>0."""
    u = torch.zeros(1, 1, 5, dtype=torch.float64)
    u[0, 0, 0] = 1.0
    delta = torch.full((1, 1, 5), 0.2, dtype=torch.float64)
    A = torch.tensor([[-1.0]], dtype=torch.float64)
    B = torch.ones(1, 1, 5, dtype=torch.float64)
    C = torch.ones(1, 1, 5, dtype=torch.float64)
    y = selective_scan_torch(u, delta, A, B, C)
    want = 0.2 * torch.exp(-0.2 * torch.arange(5, dtype=torch.float64))
    torch.testing.assert_close(y[0, 0], want)


@pytest.mark.parametrize("with_options", [False, True])
@pytest.mark.parametrize("groups", [None, 2])
def test_own_scan_gradcheck_fp64(with_options, groups):
    inp = make_inputs(batch=2, dim=4, length=5, d_state=3, groups=groups, dtype=torch.float64, seed=1)
    names = ["u", "delta", "A", "B", "C"] + (["D", "z", "delta_bias"] if with_options else [])
    tensors = [inp[name].clone().requires_grad_() for name in names]

    def fn(*args):
        kwargs = dict(zip(names, args, strict=True))
        return selective_scan_torch(**kwargs, delta_softplus=with_options)

    assert torch.autograd.gradcheck(fn, tensors, eps=1e-6, atol=1e-6)


def test_own_scan_low_precision_returns_input_dtype():
    inp = make_inputs()
    args = [inp[k].bfloat16() for k in ("u", "delta", "A", "B", "C")]
    y = selective_scan_torch(*args, D=inp["D"], delta_softplus=True)
    assert y.dtype == torch.bfloat16
    want = naive_scan(*args, D=inp["D"], delta_softplus=True)
    torch.testing.assert_close(y.double(), want, atol=0.1, rtol=0.05)


# ---------------------------------------------------------------- the fused CPU scan (numba kernels)


@pytest.mark.parametrize("use_D,use_z,use_bias,softplus", OPTION_COMBOS)
def test_fused_scan_matches_naive_loop_fp32(use_D, use_z, use_bias, softplus):
    inp = make_inputs()
    kwargs = {"D": inp["D"] if use_D else None, "z": inp["z"] if use_z else None,
              "delta_bias": inp["delta_bias"] if use_bias else None, "delta_softplus": softplus}
    got = selective_scan_fused(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], **kwargs)
    want = naive_scan(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], **kwargs)
    assert got.dtype == torch.float32 and got.shape == inp["u"].shape
    torch.testing.assert_close(got, want.float(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("with_options", [False, True])
def test_fused_scan_gradcheck_fp64(with_options):
    inp = make_inputs(batch=2, dim=4, length=5, d_state=3, dtype=torch.float64, seed=1)
    names = ["u", "delta", "A", "B", "C"] + (["D", "z", "delta_bias"] if with_options else [])
    tensors = [inp[name].clone().requires_grad_() for name in names]

    def fn(*args):
        return selective_scan_fused(**dict(zip(names, args, strict=True)), delta_softplus=with_options)

    assert torch.autograd.gradcheck(fn, tensors, eps=1e-6, atol=1e-6)


def test_fused_scan_equals_the_torch_scan_across_channel_blocks_forward_and_backward():
    """Supernet-like shapes, channels split over several kernel blocks (the last one partial)."""
    inp = make_inputs(batch=5, dim=2 * scan_cpu._BLOCK + 24, length=25, d_state=16, seed=4)
    results = []
    for fn in (selective_scan_fused, selective_scan_torch):
        leaves = {k: v.clone().requires_grad_() for k, v in inp.items()}
        y = fn(**leaves, delta_softplus=True)
        y.square().sum().backward()
        results.append((y, {k: v.grad for k, v in leaves.items()}))
    (y_fused, g_fused), (y_torch, g_torch) = results
    torch.testing.assert_close(y_fused, y_torch, atol=1e-5, rtol=1e-5)
    for name in inp:
        torch.testing.assert_close(g_fused[name], g_torch[name], atol=1e-4, rtol=1e-4, msg=name)


def test_kernels_float32_exp_is_within_about_one_ulp_and_clamped_at_the_ends():
    x = np.concatenate([np.linspace(-87.3, 88.3, 400_001), -np.random.default_rng(0).exponential(5, 100_000)])
    x = x[x > -87.3].astype(np.float32)
    got = np.empty_like(x)
    exp_into(x, got)
    want = np.exp(x.astype(np.float64))
    ulps = np.abs(got - want) / np.spacing(want.astype(np.float32))
    assert ulps.max() < 1.5
    ends = np.array([-88.5, -1e4, -np.inf, 90.0, np.inf, np.nan], dtype=np.float32)
    got = np.empty_like(ends)
    exp_into(ends, got)
    assert (got[:3] == 0).all()  # exp is subnormal or 0 there
    assert np.isfinite(got[3:5]).all() and (got[3:5] > 2e38).all()  # clamped at exp(88.37)
    assert np.isnan(got[5])


def test_fused_scan_checks_shapes_and_refuses_channel_groups():
    inp = make_inputs(groups=2)
    with pytest.raises(ValueError, match="channel groups need selective_scan_torch"):
        selective_scan_fused(**inp)
    inp = make_inputs()
    inp["D"] = torch.zeros(7)
    with pytest.raises(ValueError, match="D must be"):
        selective_scan_fused(**inp)


def test_fused_scan_passes_nan_on_and_is_first_order_only():
    inp = make_inputs()
    inp["u"][0, 0, 3] = float("nan")
    y = selective_scan_fused(**inp)
    assert torch.isnan(y[0, 0, 3:]).all() and torch.isfinite(y[1:]).all()
    leaves = {k: v.clone().requires_grad_() for k, v in make_inputs().items()}
    (grad_u,) = torch.autograd.grad(selective_scan_fused(**leaves).sum(), [leaves["u"]], create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|differentiate twice"):
        grad_u.sum().backward()


@pytest.fixture
def scan_calls(monkeypatch):
    """Which implementation the dispatcher calls: a list that fills with "fused" / "torch"."""
    calls = []
    fused, own = scan.selective_scan_fused, scan.selective_scan_torch
    monkeypatch.setattr(scan, "selective_scan_fused", lambda *a, **k: calls.append("fused") or fused(*a, **k))
    monkeypatch.setattr(scan, "selective_scan_torch", lambda *a, **k: calls.append("torch") or own(*a, **k))
    return calls


def test_dispatch_fused_on_one_cpu_thread_torch_scan_otherwise(scan_calls, monkeypatch):
    assert fused_scan_available()
    inp = make_inputs()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        selective_scan(**inp)
        selective_scan(**make_inputs(groups=3))  # channel groups: the kernels take (batch, N, L) B and C only
        rest = [inp[k] for k in ("delta", "A", "B", "C")]
        torch.jit.trace(lambda u: selective_scan(u, *rest), inp["u"], check_trace=False)  # ONNX export traces
        with monkeypatch.context() as patch:
            patch.setattr(scan, "fused_scan_available", lambda: False)  # numba missing
            selective_scan(**inp)
        torch.set_num_threads(2)  # more threads: torch's scan parallelises, the kernels are serial
        selective_scan(**inp)
    finally:
        torch.set_num_threads(threads)
    assert scan_calls == ["fused", "torch", "torch", "torch", "torch"]


@pytest.mark.parametrize(
    "field,bad,fragment",
    [
        ("u", torch.zeros(3, 6), "u must be (batch, dim, L)"),
        ("delta", torch.zeros(3, 6, 12), "delta must have u's shape"),
        ("A", torch.zeros(5, 4), "A must be (dim=6, N)"),
        ("B", torch.zeros(3, 5, 13), "B must be (batch=3, N=4, L=13)"),
        ("C", torch.zeros(3, 4, 4, 13), "C must be"),
        ("D", torch.zeros(7), "D must be (dim=6,)"),
        ("z", torch.zeros(3, 6, 2), "z must have u's shape"),
        ("delta_bias", torch.zeros(6, 1), "delta_bias must be (dim=6,)"),
    ],
)
def test_bad_shapes_raise_one_line_value_error(field, bad, fragment):
    inp = make_inputs()
    inp[field] = bad
    with pytest.raises(ValueError) as err:
        selective_scan(**inp)
    assert fragment in str(err.value) and "\n" not in str(err.value)


@pytest.fixture
def fresh_mamba_probe(monkeypatch):
    """Forget the cached mamba-ssm probe and any mamba_ssm modules, before and after the test."""

    def purge():
        scan._mamba_scan_fn.cache_clear()
        for name in [n for n in sys.modules if n == "mamba_ssm" or n.startswith("mamba_ssm.")]:
            monkeypatch.delitem(sys.modules, name)

    purge()
    yield
    purge()
    scan._mamba_scan_fn.cache_clear()


def write_fake_mamba(root, interface_body):
    pkg = root / "mamba_ssm"
    (pkg / "ops").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "ops" / "__init__.py").write_text("")
    (pkg / "ops" / "selective_scan_interface.py").write_text(interface_body)


def test_probe_missing_mamba_is_none_quietly(fresh_mamba_probe, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "mamba_ssm", None)  # makes the import fail like a missing package
    with caplog.at_level(logging.DEBUG, logger=scan.__name__):
        assert scan._mamba_scan_fn() is None
    assert not cuda_scan_available()
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]


@pytest.mark.parametrize(
    "body",
    [
        "raise RuntimeError('libcudart.so.12: cannot open shared object file')\n",
        "import selective_scan_cuda_not_built_here\n",  # an ImportError that is not mamba_ssm's absence
    ],
)
def test_probe_broken_mamba_is_none_with_a_warning(fresh_mamba_probe, monkeypatch, tmp_path, caplog, body):
    write_fake_mamba(tmp_path, body)
    monkeypatch.syspath_prepend(str(tmp_path))
    with caplog.at_level(logging.DEBUG, logger=scan.__name__):
        assert scan._mamba_scan_fn() is None
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


def test_probe_needs_extension_with_fwd(fresh_mamba_probe, monkeypatch, tmp_path):
    write_fake_mamba(
        tmp_path,
        "import types\nselective_scan_cuda = types.SimpleNamespace()\ndef selective_scan_fn(*a, **k):\n    pass\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert scan._mamba_scan_fn() is None


def test_probe_accepts_working_install_but_cpu_tensors_use_own_scan(fresh_mamba_probe, monkeypatch, tmp_path):
    write_fake_mamba(
        tmp_path,
        "import types\nselective_scan_cuda = types.SimpleNamespace(fwd=None)\n"
        "def selective_scan_fn(*a, **k):\n    raise AssertionError('CUDA kernel called for a CPU tensor')\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    fn = scan._mamba_scan_fn()
    assert fn is not None and fn.__module__ == "mamba_ssm.ops.selective_scan_interface"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert cuda_scan_available()
    inp = make_inputs(groups=2)  # channel groups: the torch scan, not the fused one
    torch.testing.assert_close(selective_scan(**inp), selective_scan_torch(**inp), atol=0, rtol=0)


def test_no_cuda_means_no_cuda_scan():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    assert not cuda_scan_available()


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_scan_available(), reason="needs CUDA and mamba-ssm's selective_scan_cuda")
@pytest.mark.parametrize("groups", [None, 1])
def test_cuda_scan_matches_own_scan(groups):
    inp = make_inputs(batch=4, dim=64, length=25, d_state=16, groups=groups, seed=3)
    cuda_args = {k: v.cuda().requires_grad_() for k, v in inp.items()}
    own_args = {k: v.cuda().requires_grad_() for k, v in inp.items()}
    weight = torch.randn(4, 64, 25, device="cuda")
    y_cuda = selective_scan(**cuda_args, delta_softplus=True)  # dispatches to mamba-ssm
    y_own = selective_scan_torch(**own_args, delta_softplus=True)
    torch.testing.assert_close(y_cuda, y_own, atol=1e-4, rtol=1e-4)
    (y_cuda * weight).sum().backward()
    (y_own * weight).sum().backward()
    for name in inp:
        torch.testing.assert_close(cuda_args[name].grad, own_args[name].grad, atol=1e-3, rtol=1e-3)
