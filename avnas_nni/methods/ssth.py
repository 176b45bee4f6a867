"""SSTH, a self-supervised (label-free) video-hashing comparator of the paper's Table 2 (line 6).

Hanwang Zhang, Meng Wang, Richang Hong, Tat-Seng Chua. *Play and Rewind: Optimizing Binary Representations of
Videos by Self-Supervised Temporal Hashing.* ACM Multimedia 2016, 781–790 (reference [58] of the AV-NAS paper).
The SSTH paper's full text and its authors' code were not at hand: this is written from its abstract (an encoder
RNN with a *Binary LSTM* (BLSTM) produces the video's binary code; decoder RNNs reconstruct the frames in forward
("play") and reverse ("rewind") order from it; a backpropagation rule gets past the binarisation), the AV-NAS
paper's account of it (Table 2: 5M parameters) and the public description of its successor SSVH (Song et al.,
TIP 2018, same group: binary LSTM auto-encoder). Where those sources leave a choice open, the choice is named
below as such.

SSTH was designed for frame features of the visual stream only (4096-d VGG frames there). Here it reads the
visual features (``(B, m, d)``, CLIP in the AV-NAS data); **the audio input is ignored**.

Network (per video of m frame features ``x_1 … x_m``)::

    s_t          = LSTM(x_t, s_{t−1})                   encoder layer 1: a plain LSTM of width H = 256
    i, f, o, g   = σ, σ, σ, tanh (W s_t + U b_{t−1} + β)  encoder layer 2: the binary LSTM, width q
    c_t          = f ⊙ c_{t−1} + i ⊙ g
    b_t          = Bin(o ⊙ tanh(c_t))                   the hidden state itself is binary, b_t ∈ {−1, +1}^q
    b            = b_m                                  the video's code (exactly ±1, so in [−1, 1])
    x̂^play_t     = W_p Dec_p(b)_t,   t = 1 … m          forward decoder: an LSTM of width q, h_0 = b, input b each step
    x̂^rewind_t   = W_r Dec_r(b)_t,   t = m … 1          reverse decoder: the same form, its own weights

``Bin`` is sign forward and the identity inside [−1, 1] (zero outside) backward — the straight-through estimator
ConMH and BTH use (:func:`avnas_nni.methods.common.binarise`); the binary hidden state feeds back into the
recurrence (``U b_{t−1}``), so gradients pass through every step's binarisation.

Training (no labels): ``L = mean ‖x̂^play − x‖² / d + mean ‖x̂^rewind − reverse(x)‖² / d`` (play and rewind
weighted equally).

Reproduced: the binary LSTM encoder whose recurrent state is binarised at every step, the final binary state as
the code, the two decoders reconstructing the sequence forwards and backwards, squared-error reconstruction, an
approximate (straight-through) gradient of the sign, no labels.

Adapted (the paper's exact choices could not be checked): the BLSTM gating above is the standard LSTM with the
sign on its output (the paper's own variant may normalise the memory cell before binarising: not reproduced);
the encoder is one plain LSTM layer (width 256) under the BLSTM, chosen because it brings the network to the
AV-NAS paper's 5M parameters at d = 4096 (5.14M; 1.30M at the AV-NAS data's d = 768); each decoder is an LSTM of
width q whose initial hidden state is the code and whose input at every step is the code again (an input-free
decoder learnt far slower on the tiny test data), with a linear read-out to the frame features;
play and rewind weights 1 and 1; the sequence length is the data's m (25 in the AV-NAS data).

Settings: SSTH's optimiser settings could not be checked; the row uses the same stand-in as BTH's — Adam lr 3e-4,
batch 256, 50 epochs. Other adaptations: ``sign(0) = +1`` (:func:`~avnas_nni.codes.sign_codes`); the best
val-mAP epoch is kept, as for every row.

Not reproduced: SSTH's own features, datasets and evaluation protocol (the AV-NAS table retrains it on AV-NAS's
features and splits); any batch normalisation inside the BLSTM.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avnas_nni.methods.base import HashingMethod
from avnas_nni.methods.common import binarise

__all__ = ["SSTH", "BinaryLSTMCell"]

logger = logging.getLogger(__name__)


class BinaryLSTMCell(nn.Module):
    """One step of SSTH's binary LSTM: an LSTM cell whose hidden state is ``Bin(o ⊙ tanh(c))`` ∈ {−1, +1}^q.

    Parameters
    ----------
    inputs : int
        Size of the step's input.
    bits : int
        Width q of the cell (the code length).
    """

    def __init__(self, inputs: int, bits: int):
        super().__init__()
        self.cell = nn.LSTMCell(inputs, bits)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The next ``(binary hidden state, memory cell)`` from input ``x`` (B, inputs) and the previous ones."""
        gates = F.linear(x, self.cell.weight_ih, self.cell.bias_ih) + F.linear(state[0], self.cell.weight_hh,
                                                                               self.cell.bias_hh)
        i, f, g, o = gates.chunk(4, dim=1)
        cell = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
        return binarise(torch.sigmoid(o) * torch.tanh(cell)), cell


class SSTH(HashingMethod):
    """SSTH (Zhang et al., ACM MM 2016), visual frames only: see the module docstring for network, loss, sources.

    Parameters
    ----------
    dim : int
        Size d of one visual frame feature (audio is never read).
    length : int
        The most frames m a video may have (25 in the AV-NAS data).
    bits : int
        Length q of the hash code (the binary LSTM's width).
    hidden : int
        Width H of the plain LSTM layer under the binary one (256).
    rewind_weight : float
        Weight of the reverse ("rewind") reconstruction against the forward ("play") one (1).
    """

    name = "ssth"
    citation = ("Hanwang Zhang, Meng Wang, Richang Hong, Tat-Seng Chua. Play and Rewind: Optimizing Binary "
                "Representations of Videos by Self-Supervised Temporal Hashing. ACM Multimedia 2016, 781-790.")
    supervised = False
    paper_settings = {"finetune_lr": 3e-4, "batch_size": 256, "finetune_epochs": 50}

    def __init__(self, dim: int = 768, length: int = 25, bits: int = 64, hidden: int = 256,
                 rewind_weight: float = 1.0):
        super().__init__()
        sizes = {"dim": dim, "length": length, "bits": bits, "hidden": hidden}
        wrong = [f"{key}={value!r}" for key, value in sizes.items() if not isinstance(value, int) or value < 1]
        if wrong:
            raise ValueError(f"SSTH: sizes must be positive integers, got {', '.join(wrong)}")
        if rewind_weight < 0:
            raise ValueError(f"SSTH: rewind_weight must be non-negative, got {rewind_weight}")
        self._config = sizes | {"rewind_weight": rewind_weight}
        self.length, self.bits, self.rewind_weight = length, bits, float(rewind_weight)
        self.encoder = nn.LSTM(dim, hidden, batch_first=True)
        self.binary = BinaryLSTMCell(hidden, bits)
        self.play, self.rewind = nn.LSTM(bits, bits, batch_first=True), nn.LSTM(bits, bits, batch_first=True)
        self.play_out, self.rewind_out = nn.Linear(bits, dim), nn.Linear(bits, dim)
        logger.debug("SSTH: %s", self._config)

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def encode(self, visual: torch.Tensor) -> torch.Tensor:
        """The binary code ``(B, q)`` ∈ {−1, +1}: the binary LSTM's last hidden state over the frames ``(B, m, d)``."""
        if visual.ndim != 3:
            raise ValueError(f"SSTH: expected videos (B, m, d), got {tuple(visual.shape)}")
        batch, length, _ = visual.shape
        if length > self.length:
            raise ValueError(f"SSTH: built for {self.length} frames, got {length}")
        steps, _ = self.encoder(visual)
        zeros = steps.new_zeros(batch, self.bits)
        state = (zeros, zeros)
        for t in range(length):
            state = self.binary(steps[:, t], state)
        return state[0]

    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, q)``, exactly ±1 (the binary LSTM's final state); ``audio`` is unused."""
        return self.encode(visual)

    def reconstruct(self, codes: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The play (frames 1…m) and rewind (frames m…1) reconstructions ``(B, m, d)`` of codes ``(B, q)``."""
        inputs = codes[:, None].expand(-1, length, -1)
        start = (codes[None].contiguous(), torch.zeros_like(codes)[None])
        play, _ = self.play(inputs, start)
        rewind, _ = self.rewind(inputs, start)
        return self.play_out(play), self.rewind_out(rewind)

    def reconstruction_errors(self, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean squared error per feature of the play and of the rewind reconstruction of videos ``(B, m, d)``."""
        play, rewind = self.reconstruct(self.encode(visual), visual.shape[1])
        return F.mse_loss(play, visual), F.mse_loss(rewind, visual.flip(1))

    def training_loss(self, visual: torch.Tensor, audio: torch.Tensor, *, tau: float = 0.0) -> torch.Tensor:
        """SSTH's loss of unlabelled videos ``visual`` (B, m, d): play error + rewind weight · rewind error.

        ``tau`` is not used (SSTH has no temperature); ``audio`` is not read.
        """
        play, rewind = self.reconstruction_errors(visual)
        return play + self.rewind_weight * rewind
