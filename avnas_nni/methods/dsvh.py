"""DSVH, a supervised video-hashing comparator of the paper's Table 2 (line 8) — a FEATURE-LEVEL ADAPTATION.

Hanqing Chen, Chunyan Hu, Feifei Lee, Chaowei Lin, Wei Yao, Lu Chen, Qiu Chen. *A Supervised Video Hashing Method
Based on a Deep 3D Convolutional Neural Network for Large-Scale Video Retrieval.* Sensors 21(9), 2021, 3094
(reference [3] of the AV-NAS paper).

Sources at hand: the DSVH paper's abstract, its list of contributions and its section outline (MDPI's and DOAJ's
public pages; the body of the paper — equations, layer table, margin, optimiser — was NOT at hand), and the AV-NAS
paper (SIGIR 2025: Section 2.1, "DSVH introduced the use of a 3DCNN for end-to-end spatial-temporal feature
extraction and binary code generation"; Section 5.1, DSVH among the supervised baselines; Table 2 line 8: 63M
parameters, mAP@100 0.2056 / 0.2979 on ActivityNet and 0.2616 / 0.3683 on FCVID at 32 / 64 bits). No code of the
authors was found. What those sources say of DSVH: a fixed number of frames per video; a 3D CNN "with residual
links pre-trained on a large-scale video dataset" (transfer learning) extracts spatial-temporal features; a hash
layer maps them to the code; the network is trained end to end with a triplet loss on triplets it selects from
the labels (Sections 3.1–3.3.1: frames selection, feature extraction, hash layer, loss function, triplet
selection).

Which 3D CNN: the AV-NAS table's 63M is the size of the Kinetics-pretrained 3D ResNet-34 of Hara, Kataoka and
Satoh (CVPR 2018; 63.5M: 3×3×3 basic blocks [3, 4, 6, 3] of widths 64–512, a 7×7×7 stem, parameter-free
shortcuts), the public 3D CNN "with residual links pre-trained on a large-scale video dataset" of that time.
Taking ResNet-34 is an inference from that count (Adapted), not read in the DSVH paper.

What is NOT reproduced, and why. **The raw-frame 3D CNN itself is not reproduced**: this project holds only
pre-extracted per-frame features ``(B, m, d)`` (CLIP frames in the AV-NAS data, spatially pooled already by
CLIP), no pixels, so a network convolving over (time, height, width) of RGB clips has nothing to run on, and its
Kinetics pre-training cannot be loaded into anything that reads these features. The AV-NAS paper does not say
how it ran DSVH on its own data (its Section 5.1 states only that all baselines' architectures are expert-designed;
the table's 63M and DSVH's 1m44s per 12.5k videos of inference — against 7s for AVHash on the same features —
suggest that the raw-frame 3D CNN was run there, but the text does not say so). Also not reproduced: DSVH's own
datasets (UCF-101, JHMDB, HMDB-51), clip sampling, input resolution and evaluation protocol; its optimiser
settings (not at hand).

The adaptation (every choice below is "Adapted"). The 3D ResNet-34 becomes a 1D ResNet-34 over the frame-feature
sequence: every 3D convolution over (t, h, w) becomes a 1D convolution over t with the same temporal extent, the
spatial extent having been pooled by CLIP; channel widths, block counts, strides over time, the pooling and the
shortcuts are Hara's ResNet-34's. Per video of m frame features ``X ∈ R^{d×m}`` (features as channels)::

    H₀ = MaxPool₃,₂(ReLU(BN(Conv₇(X))))                    stem: 3D 7×7×7 (stride 1 in t) → 1D 7-tap, d → 64
    H_s = Block_s^{n_s}(H_{s−1}),  s = 1…4                 n = (3, 4, 6, 3), widths (64, 128, 256, 512),
    Block(H) = ReLU(BN(Conv₃(ReLU(BN(Conv₃^{stride}(H))))) + Short(H))      stride 2 over t at s = 2, 3, 4
    Short(H) = H, or [H[::2]; 0] where width/stride change  parameter-free ("type A") shortcut, as Hara's 34
    v = mean_t H₄                                           global average pool (3D: over t, h, w; 1D: over t)
    h = tanh(W_h v + b_h),   b = sign(h)                    hash layer, q outputs in [−1, 1]

Loss (supervised): for each anchor a, the positive p of its class and the ``n0`` negatives n_j of other classes
(the project's SPEC §3 triplets, the rows AVHash trains on; DSVH's own triplet selection could not be checked)::

    L = mean_{batch, j}  max(0,  α + ‖h_a − h_p‖² / q − ‖h_a − h_{n_j}‖² / q)

the triplet (hinge) loss on the relaxed codes, squared Euclidean distances per bit (in [0, 4]; for exact codes
‖b − b'‖² / q = 4 · Hamming / q), margin α = 1 (a Hamming gap of q / 4 bits between a negative and the positive).
Adapted: the distance, its per-bit scale, the margin, averaging over the ``n0`` negatives, and tanh as the hash
layer's activation (the abstract names none; tanh keeps the outputs in [−1, 1]). No classification or
quantisation term is added: the sources name only the triplet loss (and the triplet rows carry no class index).

Visual only: DSVH reads RGB frames, so here it reads the visual features; **the audio input is ignored**.

#Params: the 63M of AV-NAS Table 2 do not transfer. A 3×3×3 kernel becomes a 3-tap one (1/9 of its weights) and the
RGB stem takes d channels instead of 3: 7.42M at the AV-NAS data's d = 768 (q = 64), 7.10M at d = 48; the same
layout with Hara's 3×3×3 kernels on RGB holds 63.3M convolution weights (the test checks this arithmetic).

Settings: DSVH's optimiser, batch and epochs could not be checked; :attr:`DSVH.paper_settings` is empty, so the
``paper`` profile gives this row the AV-NAS paper's own setting (SPEC §4: Adam lr 1e-4, eps 1e-3, batch 128, 300
epochs, 4 negatives), as for the NAS rows; the temperature τ is not used (the loss has none). Initialisation:
He-normal (fan-out) convolutions, unit/zero BatchNorm, as in Hara's code; no pre-training (there is none for
these features). The best val-mAP epoch is kept, as for every row.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avnas_nni.methods.base import HashingMethod

__all__ = ["DSVH", "TemporalBasicBlock"]

logger = logging.getLogger(__name__)

#: 3D ResNet-34 (Hara et al., CVPR 2018): basic blocks per stage and their widths.
RESNET34_BLOCKS, RESNET34_WIDTHS = (3, 4, 6, 3), (64, 128, 256, 512)


class TemporalBasicBlock(nn.Module):
    """A ResNet basic block over time: two 3-tap convolutions (the first with ``stride``), BatchNorm, ReLU, and a
    parameter-free shortcut (subsampled, zero-padded to the new width: Hara's "type A") — a 3D ResNet's 3×3×3 block
    with its spatial extent pooled away.

    Parameters
    ----------
    inputs, outputs : int
        Channels in and out.
    stride : int
        Temporal stride of the first convolution (and of the shortcut).
    kernel : int
        Taps of both convolutions (odd).
    """

    def __init__(self, inputs: int, outputs: int, stride: int = 1, kernel: int = 3):
        super().__init__()
        self.outputs, self.stride = outputs, stride
        self.conv1 = nn.Conv1d(inputs, outputs, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.norm1 = nn.BatchNorm1d(outputs)
        self.conv2 = nn.Conv1d(outputs, outputs, kernel, padding=kernel // 2, bias=False)
        self.norm2 = nn.BatchNorm1d(outputs)

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C, T) subsampled by the stride and zero-padded to ``outputs`` channels."""
        if self.stride > 1:
            x = x[:, :, :: self.stride]
        return F.pad(x, (0, 0, 0, self.outputs - x.shape[1])) if x.shape[1] < self.outputs else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(out)) + self.shortcut(x))


class DSVH(HashingMethod):
    """DSVH (Chen et al., Sensors 2021) adapted to frame features: see the module docstring for what was 3D, the
    network, the loss and the sources. Visual features only.

    Parameters
    ----------
    dim : int
        Size d of one visual frame feature: the stem's input channels (audio is never read).
    length : int
        The most frames m a video may have (25 in the AV-NAS data).
    bits : int
        Code length q (the hash layer's outputs).
    blocks : sequence of int
        Basic blocks per stage (ResNet-34's 3, 4, 6, 3).
    widths : sequence of int
        Channels per stage (64, 128, 256, 512), as many as ``blocks``; each is at least the previous one.
    kernel : int
        Taps of the blocks' temporal convolutions (3: the temporal extent of a 3×3×3 kernel); odd.
    stem_kernel : int
        Taps of the stem convolution (7: the temporal extent of the 7×7×7 stem); odd.
    margin : float
        Margin α of the triplet loss, in squared distance per bit (1: a Hamming gap of q / 4 bits).
    """

    name = "dsvh"
    citation = ("Hanqing Chen, Chunyan Hu, Feifei Lee, Chaowei Lin, Wei Yao, Lu Chen, Qiu Chen. A Supervised Video "
                "Hashing Method Based on a Deep 3D Convolutional Neural Network for Large-Scale Video Retrieval. "
                "Sensors 21(9), 2021, 3094. Feature-level adaptation: 1D ResNet-34 over frame features.")
    supervised = True
    paper_settings: dict[str, Any] = {}

    def __init__(self, dim: int = 768, length: int = 25, bits: int = 64, blocks: Sequence[int] = RESNET34_BLOCKS,
                 widths: Sequence[int] = RESNET34_WIDTHS, kernel: int = 3, stem_kernel: int = 7,
                 margin: float = 1.0):
        super().__init__()
        sizes = {"dim": dim, "length": length, "bits": bits, "kernel": kernel, "stem_kernel": stem_kernel}
        wrong = [f"{key}={value!r}" for key, value in sizes.items() if not isinstance(value, int) or value < 1]
        if wrong:
            raise ValueError(f"DSVH: sizes must be positive integers, got {', '.join(wrong)}")
        blocks, widths = list(blocks), list(widths)
        if not blocks or len(blocks) != len(widths):
            raise ValueError(f"DSVH: blocks and widths must be equally long and not empty, got {blocks} and {widths}")
        for label, values in (("blocks", blocks), ("widths", widths)):
            if any(not isinstance(v, int) or v < 1 for v in values):
                raise ValueError(f"DSVH: {label} must be positive integers, got {values}")
        if any(b < a for a, b in zip(widths, widths[1:], strict=False)):
            raise ValueError(f"DSVH: widths must not decrease (zero-padded shortcuts), got {widths}")
        if kernel % 2 == 0 or stem_kernel % 2 == 0:
            raise ValueError(f"DSVH: kernel and stem_kernel must be odd, got {kernel} and {stem_kernel}")
        if not margin >= 0:
            raise ValueError(f"DSVH: margin must be non-negative, got {margin}")
        self._config = sizes | {"blocks": blocks, "widths": widths, "margin": float(margin)}
        self.length, self.margin = length, float(margin)
        self.stem = nn.Sequential(nn.Conv1d(dim, widths[0], stem_kernel, padding=stem_kernel // 2, bias=False),
                                  nn.BatchNorm1d(widths[0]), nn.ReLU(),
                                  nn.MaxPool1d(3, stride=2, padding=1))
        stages, inputs = [], widths[0]
        for stage, (count, width) in enumerate(zip(blocks, widths, strict=True)):
            layers = []
            for index in range(count):
                stride = 2 if stage > 0 and index == 0 else 1
                layers.append(TemporalBasicBlock(inputs, width, stride, kernel))
                inputs = width
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.hash = nn.Linear(widths[-1], bits)
        for module in self.modules():
            if isinstance(module, nn.Conv1d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm1d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        logger.debug("DSVH: %s", self._config)

    def config(self) -> dict[str, Any]:
        return {key: (list(value) if isinstance(value, list) else value) for key, value in self._config.items()}

    def features(self, visual: torch.Tensor) -> torch.Tensor:
        """The pooled video feature ``(B, widths[-1])`` of frame features ``(B, m, d)``."""
        if visual.ndim != 3:
            raise ValueError(f"DSVH: expected videos (B, m, d), got {tuple(visual.shape)}")
        if visual.shape[1] > self.length:
            raise ValueError(f"DSVH: built for {self.length} frames, got {visual.shape[1]}")
        hidden = self.stages(self.stem(visual.transpose(1, 2)))  # (B, C, T'): the frames are the time axis
        return hidden.mean(2)

    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, q)`` in [−1, 1] (the hash layer's tanh); ``audio`` is not read."""
        return torch.tanh(self.hash(self.features(visual)))

    def training_loss(self, visual: torch.Tensor, audio: torch.Tensor, *, tau: float = 0.0) -> torch.Tensor:
        """DSVH's triplet loss of triplet rows ``visual`` (B, 2 + n0, m, d): anchor, positive, n0 negatives.

        ``tau`` is not used (the loss has no temperature); ``audio`` is not read.
        """
        if visual.ndim != 4 or visual.shape[1] < 3:
            raise ValueError(f"DSVH: expected triplet rows (B, 2 + n0, m, d), got {tuple(visual.shape)}")
        batch, k = visual.shape[:2]
        codes = self(visual.flatten(0, 1), audio).view(batch, k, -1)
        bits = codes.shape[2]
        anchor = codes[:, :1]
        positive = (anchor[:, 0] - codes[:, 1]).pow(2).sum(1, keepdim=True) / bits  # (B, 1)
        negative = (anchor - codes[:, 2:]).pow(2).sum(2) / bits  # (B, n0)
        return F.relu(self.margin + positive - negative).mean()
