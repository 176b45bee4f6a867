"""Multi-head attention for the attention candidates: torch's module, computed faster at this space's shapes.

The SelfAttention (M, T) and CrossAttention (I) candidates attend over m ≈ 25 frames with 12 heads of width
d/12 (4 at d = 48, 8 at d = 96 on the embedded data; 64 at the paper's d = 768). At head widths of 4–8 torch's
fused CPU attention kernels spend their time on per-head overhead rather than arithmetic; the same attention as
two batched matmuls and a softmax is faster forward + backward (torch 2.13, 1 thread, m 25, median of 5 on an
idle 2-core EPYC: batch 192 × d 48 28 → 14 ms, d 96 44 → 27 ms; batch 64 × d 768 277 → 269 ms), and inference
likewise (d 48 11 → 6 ms). ``python -m benchmarks.supernet_speed`` shows the effect on a whole supernet step.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MultiheadAttention"]

logger = logging.getLogger(__name__)


class MultiheadAttention(nn.MultiheadAttention):
    """``torch.nn.MultiheadAttention`` (batch first), whose output on CPU comes from explicit batched matmuls.

    Same parameters, state-dict keys and results (to float rounding) as the parent; only ``forward(query, key,
    value, need_weights=False)`` without masks takes the batched-matmul path, on CPU tensors. Everything else
    (CUDA, where torch's fused kernels are the fast ones; masks; returned weights; ``add_bias_kv``) is the
    parent's forward.

    Parameters
    ----------
    dim : int
        Embedding width d.
    num_heads : int
        Heads; must divide d.
    dropout : float
        Dropout on the attention weights while training.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__(dim, num_heads, dropout=dropout, batch_first=True)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_padding_mask=None,
                need_weights: bool = True, attn_mask=None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(batch, m, d) queries, (batch, m', d) keys and values -> ((batch, m, d), weights or None)."""
        plain = (not need_weights and key_padding_mask is None and attn_mask is None and not is_causal
                 and self.bias_k is None and not self.add_zero_attn and self._qkv_same_embed_dim
                 and not query.is_cuda and query.dim() == 3)
        if not plain:
            return super().forward(query, key, value, key_padding_mask=key_padding_mask, need_weights=need_weights,
                                   attn_mask=attn_mask, average_attn_weights=average_attn_weights,
                                   is_causal=is_causal)
        return self._batched_matmul_attention(query, key, value), None

    def _batched_matmul_attention(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        batch, length, dim = query.shape
        heads, width = self.num_heads, self.head_dim
        weight, bias = self.in_proj_weight, self.in_proj_bias
        if query is key and key is value:  # self-attention: one projection for q, k and v
            q, k, v = F.linear(query, weight, bias).view(batch, length, 3, heads, width).permute(2, 0, 3, 1, 4)
        else:
            w_q, w_k, w_v = weight.chunk(3)
            b_q, b_k, b_v = (None, None, None) if bias is None else bias.chunk(3)
            q = F.linear(query, w_q, b_q).view(batch, length, heads, width).transpose(1, 2)
            k = F.linear(key, w_k, b_k).view(batch, key.shape[1], heads, width).transpose(1, 2)
            v = F.linear(value, w_v, b_v).view(batch, value.shape[1], heads, width).transpose(1, 2)
        scores = (q * width**-0.5) @ k.transpose(-1, -2)  # (batch, heads, m, m')
        weights = scores.softmax(dim=-1)
        if self.training and self.dropout > 0:
            weights = F.dropout(weights, self.dropout)
        attended = (weights @ v).transpose(1, 2).reshape(batch, length, dim)
        return self.out_proj(attended)
