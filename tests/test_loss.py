"""Tests of the InfoNCE objective (paper Eq. 36-37) against hand computations and explicit loops."""

from __future__ import annotations

import math

import pytest
import torch

from avnas_nni.loss import InfoNCELoss, info_nce


def _hand_loss(pos_cos: float, neg_cos: list[float], tau: float) -> float:
    numerator = math.exp(pos_cos / tau)
    return -math.log(numerator / (numerator + sum(math.exp(c / tau) for c in neg_cos)))


def test_matches_hand_computation_on_2d_vectors() -> None:
    # Anchor along x (length 3: the loss must normalise). Positive at 45°: cos = 1/√2.
    # Negatives: along y (cos 0) and along -x with length 2 (cos -1).
    anchor = torch.tensor([[3.0, 0.0]])
    positive = torch.tensor([[1.0, 1.0]])
    negatives = torch.tensor([[[0.0, 5.0], [-2.0, 0.0]]])
    tau = 0.5
    # -log(e^{√2} / (e^{√2} + e^0 + e^{-2}))
    expected = -math.log(math.exp(math.sqrt(2)) / (math.exp(math.sqrt(2)) + 1.0 + math.exp(-2.0)))
    assert expected == pytest.approx(_hand_loss(1 / math.sqrt(2), [0.0, -1.0], tau))
    loss = info_nce(anchor, positive, negatives, tau=tau)
    assert loss.shape == ()
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_batch_mean_of_per_anchor_losses() -> None:
    # Row 0 as above; row 1: anchor along y, positive along y (cos 1), one negative at 45° (cos 1/√2)
    # and one along x (cos 0).
    anchor = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    positive = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    negatives = torch.tensor([[[0.0, 1.0], [-1.0, 0.0]], [[1.0, 1.0], [1.0, 0.0]]])
    tau = 0.1
    row0 = _hand_loss(1 / math.sqrt(2), [0.0, -1.0], tau)
    row1 = _hand_loss(1.0, [1 / math.sqrt(2), 0.0], tau)
    assert info_nce(anchor, positive, negatives, tau=tau).item() == pytest.approx((row0 + row1) / 2, rel=1e-5)


def test_default_tau_is_the_papers() -> None:
    anchor = torch.tensor([[1.0, 0.0]])
    positive = torch.tensor([[1.0, 1.0]])
    negatives = torch.tensor([[[2.0, 1.0]]])  # cos = 2/√5, closer than the positive
    assert info_nce(anchor, positive, negatives).item() == pytest.approx(
        _hand_loss(1 / math.sqrt(2), [2 / math.sqrt(5)], 0.1), rel=1e-5
    )


def test_gradient_is_finite_even_when_exp_would_overflow() -> None:
    torch.manual_seed(0)
    anchor = torch.tanh(torch.randn(8, 64)).requires_grad_()
    positive = torch.tanh(torch.randn(8, 64)).requires_grad_()
    negatives = torch.tanh(torch.randn(8, 4, 64)).requires_grad_()
    # tau = 1e-3 puts logits near ±1000: e^{1000} overflows float32, log-sum-exp does not.
    for tau in (0.1, 1e-3):
        loss = info_nce(anchor, positive, negatives, tau=tau)
        assert torch.isfinite(loss)
        anchor.grad = positive.grad = negatives.grad = None
        loss.backward()
        for tensor in (anchor, positive, negatives):
            assert tensor.grad is not None and torch.isfinite(tensor.grad).all()
            assert tensor.grad.abs().sum() > 0


def test_gradient_lowers_the_loss() -> None:
    torch.manual_seed(1)
    anchor = torch.randn(4, 16, requires_grad=True)
    positive, negatives = torch.randn(4, 16), torch.randn(4, 4, 16)
    before = info_nce(anchor, positive, negatives)
    before.backward()
    with torch.no_grad():
        after = info_nce(anchor - 0.05 * anchor.grad, positive, negatives)
    assert after < before


def test_tau_effect() -> None:
    # Positive closer than every negative: a smaller tau lowers the loss (sharper softmax on the positive).
    easy = (torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.2]]), torch.tensor([[[0.0, 1.0], [-1.0, 0.3]]]))
    losses = [info_nce(*easy, tau=tau).item() for tau in (1.0, 0.5, 0.1, 0.05)]
    assert losses == sorted(losses, reverse=True) and losses[-1] < losses[0]
    # A negative closer than the positive (a hard negative): a smaller tau raises the loss.
    hard = (torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([[[1.0, 0.1]]]))
    hard_losses = [info_nce(*hard, tau=tau).item() for tau in (1.0, 0.5, 0.1)]
    assert hard_losses == sorted(hard_losses)
    # A huge tau flattens the softmax: the loss tends to log(1 + n0).
    torch.manual_seed(2)
    flat = info_nce(torch.randn(3, 8), torch.randn(3, 8), torch.randn(3, 4, 8), tau=1e6)
    assert flat.item() == pytest.approx(math.log(5), rel=1e-5)


def _in_batch_loop(anchor, positive, negatives, tau, labels=None) -> torch.Tensor:
    losses = []
    a = anchor / anchor.norm(dim=1, keepdim=True)
    p = positive / positive.norm(dim=1, keepdim=True)
    n = negatives / negatives.norm(dim=2, keepdim=True)
    for i in range(anchor.shape[0]):
        negative_sims = [torch.dot(a[i], n[i, j]) for j in range(n.shape[1])]
        for j in range(anchor.shape[0]):
            if j == i or (labels is not None and labels[j] == labels[i]):
                continue
            negative_sims.append(torch.dot(a[i], p[j]))
        numerator = torch.exp(torch.dot(a[i], p[i]) / tau)
        denominator = numerator + sum(torch.exp(s / tau) for s in negative_sims)
        losses.append(-torch.log(numerator / denominator))
    return torch.stack(losses).mean()


def test_in_batch_negatives_match_explicit_loop() -> None:
    torch.manual_seed(3)
    anchor, positive, negatives = torch.randn(5, 6), torch.randn(5, 6), torch.randn(5, 3, 6)
    got = info_nce(anchor, positive, negatives, tau=0.5, in_batch_negatives=True)
    assert got.item() == pytest.approx(_in_batch_loop(anchor, positive, negatives, 0.5).item(), rel=1e-5)
    # More negatives can only raise the loss.
    assert got > info_nce(anchor, positive, negatives, tau=0.5)
    # Same-class in-batch negatives are dropped when labels are given.
    labels = torch.tensor([0, 1, 0, 2, 1])
    masked = info_nce(anchor, positive, negatives, tau=0.5, in_batch_negatives=True, labels=labels)
    expected = _in_batch_loop(anchor, positive, negatives, 0.5, labels.tolist())
    assert masked.item() == pytest.approx(expected.item(), rel=1e-5)
    multi_hot = torch.nn.functional.one_hot(labels, 3)
    assert info_nce(
        anchor, positive, negatives, tau=0.5, in_batch_negatives=True, labels=multi_hot
    ).item() == pytest.approx(masked.item(), rel=1e-6)


def test_in_batch_negatives_alone_and_gradient() -> None:
    torch.manual_seed(4)
    anchor = torch.randn(4, 8, requires_grad=True)
    positive, negatives = torch.randn(4, 8), torch.randn(4, 0, 8)
    loss = info_nce(anchor, positive, negatives, tau=0.2, in_batch_negatives=True, labels=torch.zeros(4))
    # Every in-batch negative masked and no explicit negative: only the positive remains, loss 0.
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    loss = info_nce(anchor, positive, negatives, tau=0.2, in_batch_negatives=True)
    assert loss.item() == pytest.approx(_in_batch_loop(anchor, positive, negatives, 0.2).item(), rel=1e-5)
    loss.backward()
    assert torch.isfinite(anchor.grad).all()


def test_module_matches_function() -> None:
    torch.manual_seed(5)
    args = (torch.randn(3, 8), torch.randn(3, 8), torch.randn(3, 4, 8))
    module = InfoNCELoss(tau=0.3, in_batch_negatives=True)
    assert module(*args).item() == pytest.approx(
        info_nce(*args, tau=0.3, in_batch_negatives=True).item(), rel=1e-6
    )
    assert "tau=0.3" in repr(module)
    with pytest.raises(ValueError, match="tau"):
        InfoNCELoss(tau=0.0)


@pytest.mark.parametrize(
    ("shapes", "match"),
    [
        (((4,), (4,), (1, 2, 4)), "anchor"),
        (((2, 4), (2, 5), (2, 3, 4)), "positive"),
        (((2, 4), (2, 4), (3, 3, 4)), "negatives"),
        (((2, 4), (2, 4), (2, 3, 5)), "negatives"),
        (((2, 4), (2, 4), (2, 4)), "negatives"),
    ],
)
def test_bad_shapes_raise_one_line_errors(shapes, match) -> None:
    tensors = [torch.zeros(shape) for shape in shapes]
    with pytest.raises(ValueError, match=match) as error:
        info_nce(*tensors)
    assert "\n" not in str(error.value)


def test_bad_tau_and_labels() -> None:
    args = (torch.randn(2, 4), torch.randn(2, 4), torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="tau"):
        info_nce(*args, tau=-1.0)
    with pytest.raises(ValueError, match="labels"):
        info_nce(*args, in_batch_negatives=True, labels=torch.zeros(3))
