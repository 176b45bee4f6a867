"""AVHash, the strongest expert-designed comparator of the paper's Table 2 (line 11).

Yuxiang Zhou, Zhe Sun, Rui Liu, Yong Chen, Dell Zhang. *AVHash: Joint Audio-Visual Hashing for Video
Retrieval.* ACM Multimedia 2024, 2370–2378 (reference [59] of the AV-NAS paper). The AVHash paper's text was
not at hand: this is written from the AV-NAS paper's account of it and the authors' public repository
(github.com/iFamilyi/AVHash, README and code read, none copied); d = 768, m = 25, 12 heads there, d and m taken
from the data here.

Network ("tri-level Transformer"), per video with image tokens ``I`` and audio tokens ``A`` (m × d each)::

    p_A, H_A = Enc_A([CLS; A])        p_I, H_I = Enc_I([CLS; I])     one-layer BERT encoders, pooled CLS
    A' = H_A + A                      I' = H_I + I                   residual to the input features
    C_A = CrossAttn(A', I')           C_I = CrossAttn(I', A')        audio queries image, and back
    A_f = Gate(A', C_A)               I_f = Gate(I', C_I)            gated fusion within a modality
    V   = Gate(I_f, A_f)                                             gated fusion across modalities
    p_V, _ = Enc_V([CLS; V])
    f = tanh(FC_q(p_V)),   b = sign(f)

``Gate(X, Y) = w₀ ⊙ X + w₁ ⊙ Y`` with ``(w₀, w₁) = softmax(tanh(FC₂([X; Y])))`` per token. Each encoder is
one post-LN BERT layer (learned absolute positions, LayerNorm ε 1e-12, 12 heads, GELU FFN of width 4d,
dropout 0.1) whose pooled output is ``tanh(FC_d(h_CLS))``; the cross-attention is multi-head with
bias-free Q/K/V projections and an output projection, no residual and no norm.

Loss (supervised; the AV-NAS paper counts AVHash among the supervised methods): per anchor video a
positive of its class and ``n0 = 4`` negatives of distinct other classes — the same SPEC §3 triplets
AV-NAS trains on — and InfoNCE (cosine similarity, τ = 0.1) on five pairs of outputs::

    L = L_V(f) + 50 · ( L(p_A, p_A) + L(p_I, p_I) + L(p_A → p_I) + L(p_I → p_A) )

where ``L(x → y)`` takes the anchor's ``x`` against the positive's and the negatives' ``y`` (the
cross-modal terms). Training: Adam lr 1e-4, eps 1e-3, batch 128 anchors, 300 epochs (the authors'
``run.py`` default; their README's example passes 100), the best val-mAP epoch kept.

Not reproduced, and why:

* The released code calls ``BertModel.from_pretrained`` on a directory holding only ``config.json``, so
  whether text-BERT weights initialised the encoders is not knowable; here they start from BERT's own
  initialisation (normal, std 0.02), the other layers from PyTorch's defaults. For features narrower than
  BERT's 768 the std grows as ``0.02·√(768/d)`` (0.08 at the embedded data's d = 48): with 0.02 at d = 12
  every video got the same code and 30 steps did not move it; at d = 768 it is BERT's 0.02 exactly.
* The code's CLS token is a fixed vector read from a file (``cls.pt``); here it is a learned vector. With a
  learned position embedding at index 0 both span the same functions.
* BERT's token-type embedding (one constant vector) and its unused word-embedding table are left out; the
  first is absorbed by the position embeddings. An unused ``Audio_project`` layer of the code is left out.
* #Params: 27.9 M at d = 768, m = 25, q = 64 against 28.4 M in the AV-NAS paper's Table 2 (the code's
  512-row position tables and unused layers, counted or not, make the difference).
* The epoch count is the repository's (300); the AVHash paper's own could not be checked.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avnas_nni.loss import info_nce
from avnas_nni.methods.base import HashingMethod

__all__ = ["AVHash"]

logger = logging.getLogger(__name__)

#: BERT's initialiser range (normal std) for linear layers, embeddings and the CLS token, at its width 768.
_INIT_STD, _BERT_WIDTH = 0.02, 768


class _BertEncoder(nn.Module):
    """One post-LN BERT layer over ``[CLS; X]`` with learned positions; returns (pooled CLS, tokens)."""

    def __init__(self, dim: int, length: int, heads: int, ffn: int, dropout: float, eps: float):
        super().__init__()
        self.cls = nn.Parameter(torch.empty(dim))
        self.position = nn.Parameter(torch.empty(length + 1, dim))
        self.embed_norm = nn.LayerNorm(dim, eps=eps)
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.attention_norm = nn.LayerNorm(dim, eps=eps)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.GELU(), nn.Linear(ffn, dim))
        self.ffn_norm = nn.LayerNorm(dim, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.pooler = nn.Linear(dim, dim)
        std = _INIT_STD * math.sqrt(_BERT_WIDTH / dim)
        for parameter in (self.cls, self.position, self.attention.in_proj_weight):
            nn.init.normal_(parameter, std=std)
        nn.init.zeros_(self.attention.in_proj_bias)
        for module in self.modules():
            if isinstance(module, nn.Linear):  # the attention's output projection included
                nn.init.normal_(module.weight, std=std)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, length, _ = x.shape
        if length + 1 > self.position.shape[0]:
            raise ValueError(f"AVHash: built for {self.position.shape[0] - 1} frames, got {length}")
        h = torch.cat([self.cls.expand(batch, 1, -1), x], dim=1) + self.position[: length + 1]
        h = self.dropout(self.embed_norm(h))
        attended, _ = self.attention(h, h, h, need_weights=False)
        h = self.attention_norm(h + self.dropout(attended))
        h = self.ffn_norm(h + self.dropout(self.ffn(h)))
        return torch.tanh(self.pooler(h[:, 0])), h[:, 1:]


class _CrossAttention(nn.Module):
    """Multi-head attention of ``x``'s tokens over ``y``'s: bias-free Q/K/V, an output projection."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(dim, dim, bias=False)
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        batch, _, dim = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:  # (B, n, d) -> (B, heads, n, d / heads)
            return t.view(batch, -1, self.heads, dim // self.heads).transpose(1, 2)

        attended = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(y)), split(self.value(y)))
        return self.out(attended.transpose(1, 2).reshape(batch, -1, dim))


class _Gate(nn.Module):
    """Per-token gated sum ``w₀ X + w₁ Y``, ``w = softmax(tanh(FC₂([X; Y])))``."""

    def __init__(self, dim: int):
        super().__init__()
        self.weights = nn.Linear(2 * dim, 2)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(torch.tanh(self.weights(torch.cat([x, y], dim=-1))), dim=-1)
        return w[..., :1] * x + w[..., 1:] * y


class AVHash(HashingMethod):
    """AVHash (Zhou et al., ACM MM 2024): see the module docstring for the network, loss and sources.

    Parameters
    ----------
    dim : int
        Feature size d of both modalities (768 in the paper); also the encoders' width.
    length : int
        Frames per video m (25 in the paper): the size of the position tables.
    bits : int
        Code length q.
    heads : int
        Attention heads of every encoder and cross-attention (12); must divide ``dim``.
    ffn : int, optional
        Width of the encoders' feed-forward layer; default ``4 * dim`` (3072 at d = 768).
    dropout : float
        Dropout of the encoders (BERT's 0.1).
    modality_weight : float
        Weight of the four modality InfoNCE terms against the video term (50 in the paper).
    layer_norm_eps : float
        ε of the encoders' LayerNorms (BERT's 1e-12).
    """

    name = "avhash"
    citation = ("Yuxiang Zhou, Zhe Sun, Rui Liu, Yong Chen, Dell Zhang. AVHash: Joint Audio-Visual Hashing "
                "for Video Retrieval. ACM Multimedia 2024, 2370-2378.")
    supervised = True
    paper_settings = {"finetune_lr": 1e-4, "finetune_eps": 1e-3, "batch_size": 128, "finetune_epochs": 300,
                      "tau": 0.1, "n_neg": 4}

    def __init__(self, dim: int = 768, length: int = 25, bits: int = 64, heads: int = 12, ffn: int | None = None,
                 dropout: float = 0.1, modality_weight: float = 50.0, layer_norm_eps: float = 1e-12):
        super().__init__()
        if dim % heads:
            raise ValueError(f"AVHash: dim {dim} is not divisible by heads {heads}")
        for label, value in (("dim", dim), ("length", length), ("bits", bits), ("heads", heads)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"AVHash: {label} must be a positive integer, got {value!r}")
        ffn = 4 * dim if ffn is None else ffn
        self._config = {"dim": dim, "length": length, "bits": bits, "heads": heads, "ffn": ffn,
                        "dropout": dropout, "modality_weight": modality_weight, "layer_norm_eps": layer_norm_eps}
        self.modality_weight = float(modality_weight)

        def encoder() -> _BertEncoder:
            return _BertEncoder(dim, length, heads, ffn, dropout, layer_norm_eps)

        self.audio_encoder, self.image_encoder, self.video_encoder = encoder(), encoder(), encoder()
        self.audio_queries_image = _CrossAttention(dim, heads)
        self.image_queries_audio = _CrossAttention(dim, heads)
        self.audio_gate, self.image_gate, self.modality_gate = _Gate(dim), _Gate(dim), _Gate(dim)
        self.hash = nn.Linear(dim, bits)  # outside the encoders: PyTorch's default initialisation, as in the code

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def outputs(self, visual: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(p_A, p_I, f)``: the audio and image encoders' pooled outputs (B, d) and the codes (B, q)."""
        pooled_audio, audio_tokens = self.audio_encoder(audio)
        pooled_image, image_tokens = self.image_encoder(visual)
        audio_tokens, image_tokens = audio_tokens + audio, image_tokens + visual
        audio_fused = self.audio_gate(audio_tokens, self.audio_queries_image(audio_tokens, image_tokens))
        image_fused = self.image_gate(image_tokens, self.image_queries_audio(image_tokens, audio_tokens))
        pooled_video, _ = self.video_encoder(self.modality_gate(image_fused, audio_fused))
        return pooled_audio, pooled_image, torch.tanh(self.hash(pooled_video))

    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return self.outputs(visual, audio)[2]

    def training_loss(self, visual: torch.Tensor, audio: torch.Tensor, *, tau: float = 0.1) -> torch.Tensor:
        """AVHash's loss of triplet rows ``visual, audio`` (B, 2 + n0, m, d): anchor, positive, negatives."""
        if visual.ndim != 4 or visual.shape[1] < 3 or audio.shape != visual.shape:
            raise ValueError(f"AVHash: expected triplet rows (B, 2 + n0, m, d) of both modalities, got "
                             f"{tuple(visual.shape)} and {tuple(audio.shape)}")
        batch, k = visual.shape[:2]
        pooled_audio, pooled_image, codes = (out.view(batch, k, -1) for out in self.outputs(
            visual.flatten(0, 1), audio.flatten(0, 1)))

        def nce(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # anchor of x against positive/negatives of y
            return info_nce(x[:, 0], y[:, 1], y[:, 2:], tau=tau)

        modality = (nce(pooled_audio, pooled_audio) + nce(pooled_image, pooled_image)
                    + nce(pooled_audio, pooled_image) + nce(pooled_image, pooled_audio))
        return nce(codes, codes) + self.modality_weight * modality
