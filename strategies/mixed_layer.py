"""NNI's differentiable mixed layer with its weighted sum Σ_k w_k·x_k computed in place.

NNI's :class:`~nni.nas.oneshot.pytorch.supermodule.differentiable.DifferentiableMixedLayer` sums the candidates'
outputs as ``x_0*w_0 + x_1*w_1 + …``: per candidate a product and a sum, each into a freshly allocated tensor,
and backward one more product and a product-then-sum per candidate. On a CPU supernet these passes over
activations that no longer sit in cache are a large share of a step (issue 14's profiles: the ``mul``/``add`` of
the mixture ~15 % of an AV-NAS step on the embedded data). :func:`mixture` does the same sum as one output
buffer accumulated in place (``add_`` with the weight as a scalar), and backward ``w_k·g`` and the dot product
``⟨g, x_k⟩`` per candidate, with no other temporaries. :class:`FusedMixedLayer` is the mixed layer with that
sum; every α-based strategy that uses NNI's mixed layer (the one-level strategy and DARTS) gets it through
:class:`~strategies._hooks.SeededDifferentiableMixin`, so their comparison stays equal.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from nni.nas.oneshot.pytorch.supermodule.differentiable import DifferentiableMixedLayer
from torch.autograd.function import once_differentiable

__all__ = ["FusedMixedLayer", "mixture"]

logger = logging.getLogger(__name__)


class _Mixture(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, weights: torch.Tensor, *items: torch.Tensor) -> torch.Tensor:
        scales = weights.tolist()
        out = items[0].mul(scales[0])
        for item, scale in zip(items[1:], scales[1:], strict=True):
            out.add_(item, alpha=scale)
        ctx.save_for_backward(weights, *items)
        ctx.scales = scales  # the backward's w_k·g takes the same Python floats
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        weights, *items = ctx.saved_tensors
        grad_weights = None
        if ctx.needs_input_grad[0]:
            flat = grad.reshape(-1)
            grad_weights = torch.stack([torch.dot(flat, item.reshape(-1)) for item in items]).to(weights.dtype)
        grad_items = [grad.mul(scale) if needed else None
                      for scale, needed in zip(ctx.scales, ctx.needs_input_grad[1:], strict=True)]
        return (grad_weights, *grad_items)


def _fusable(items: Sequence[Any], weights: Any) -> bool:
    """The in-place sum applies to same-shape, same-dtype floating CPU tensors and a 1-d weight tensor (anything else,
    e.g. tuples of tensors or CUDA, where ``tolist`` would synchronise, takes NNI's sum)."""
    if not (isinstance(weights, torch.Tensor) and weights.dim() == 1 and len(items) == weights.numel() > 0):
        return False
    first = items[0]
    return (isinstance(first, torch.Tensor) and first.device.type == "cpu" and first.is_floating_point()
            and weights.device.type == "cpu"
            and all(isinstance(item, torch.Tensor) and item.shape == first.shape and item.dtype == first.dtype
                    and item.device == first.device for item in items))


def mixture(items: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """Σ_k weights[k]·items[k] of same-shape CPU tensors, differentiable in both, accumulated in one buffer.

    Parameters
    ----------
    items : sequence of torch.Tensor
        The candidates' outputs, all of one shape and floating dtype, on the CPU.
    weights : torch.Tensor
        (len(items),) mixing weights, e.g. softmax(α).

    Returns
    -------
    torch.Tensor
        The weighted sum, in the items' dtype.
    """
    if not _fusable(items, weights):
        raise ValueError(f"mixture: expected {weights.numel() if isinstance(weights, torch.Tensor) else '?'} CPU "
                         "floating tensors of one shape and dtype and a 1-d weight tensor")
    return _Mixture.apply(weights, *items)


class FusedMixedLayer(DifferentiableMixedLayer):
    """NNI's ``DifferentiableMixedLayer`` whose weighted sum is :func:`mixture` where it applies (CPU tensors of
    one shape), else NNI's own ``weighted_sum``; same parameters, export and results to float rounding."""

    def _reduction(self, items: list[Any], weights: Any) -> Any:
        if _fusable(items, weights):
            return _Mixture.apply(weights, *items)
        return super()._reduction(items, weights)
