"""The mixed layer's in-place weighted sum: same values and gradients as NNI's, used by DARTS and one-level alike."""

from __future__ import annotations

import pytest
import torch
from nni.nas.nn.pytorch import LayerChoice, ModelSpace
from nni.nas.oneshot.pytorch.supermodule._expression_utils import weighted_sum
from nni.nas.oneshot.pytorch.supermodule.differentiable import DifferentiableMixedLayer
from torch import nn

from strategies import DartsBaseline, OneLevel, ProxylessBaseline
from strategies.mixed_layer import FusedMixedLayer, mixture


def _inputs(dtype, needs_grad=(True, True, True)):
    g = torch.Generator().manual_seed(0)
    items = [torch.randn(3, 5, 7, generator=g, dtype=dtype).requires_grad_(need) for need in needs_grad]
    alpha = torch.randn(len(items), generator=g, dtype=dtype, requires_grad=True)
    return items, alpha


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("needs_grad", [(True, True, True), (True, False, True)])
def test_mixture_equals_nni_weighted_sum_and_its_gradients(dtype, needs_grad):
    items, alpha = _inputs(dtype, needs_grad)
    grad = torch.randn(3, 5, 7, dtype=dtype, generator=torch.Generator().manual_seed(1))
    results = []
    for reduce in (weighted_sum, mixture):
        for t in (*items, alpha):
            t.grad = None
        out = reduce(items, alpha.softmax(0))
        out.backward(grad)
        results.append((out.detach(), alpha.grad.clone(), [None if t.grad is None else t.grad.clone() for t in items]))
    (ref, ref_alpha, ref_items), (got, got_alpha, got_items) = results
    tol = {"atol": 1e-6, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 1e-12, "rtol": 1e-12}
    torch.testing.assert_close(got, ref, **tol)
    torch.testing.assert_close(got_alpha, ref_alpha, **tol)
    for want, have, need in zip(ref_items, got_items, needs_grad, strict=True):
        assert (have is None) == (not need)
        if need:
            torch.testing.assert_close(have, want, **tol)


def test_mixture_gradcheck():
    items, alpha = _inputs(torch.float64)
    assert torch.autograd.gradcheck(lambda a, *xs: mixture(xs, a.softmax(0)), (alpha, *items))


def test_mixture_refuses_what_it_cannot_sum():
    items, alpha = _inputs(torch.float32)
    with pytest.raises(ValueError, match="one shape"):
        mixture([items[0], items[1][:, :2]], alpha[:2])
    with pytest.raises(ValueError, match="1-d weight"):
        mixture(items, alpha[:2])


class _Space(ModelSpace):
    def __init__(self):
        super().__init__()
        self.cell = LayerChoice({"linear": nn.Linear(4, 4), "skip": nn.Identity()}, label="cell")

    def forward(self, x):
        return self.cell(x)


def test_one_level_and_darts_share_the_fused_mixed_layer_proxyless_keeps_its_own():
    strategies = ((OneLevel(seed=0), True), (DartsBaseline(seed=0), True), (ProxylessBaseline(seed=0), False))
    for strategy, fused in strategies:
        supernet = strategy.mutate_model(_Space())
        kinds = {type(m) for m in supernet.modules() if isinstance(m, DifferentiableMixedLayer)}
        assert (kinds == {FusedMixedLayer}) if fused else (FusedMixedLayer not in kinds), type(strategy).__name__


def test_fused_layer_falls_back_to_nni_for_tuples():
    supernet = OneLevel(seed=0).mutate_model(_Space())
    layer = next(m for m in supernet.modules() if isinstance(m, FusedMixedLayer))
    pairs = [(torch.ones(2), torch.zeros(2)), (torch.zeros(2), torch.ones(2))]
    out = layer._reduction(pairs, torch.tensor([0.25, 0.75]))
    torch.testing.assert_close(out[0], torch.full((2,), 0.25))
    torch.testing.assert_close(out[1], torch.full((2,), 0.75))
