"""The one evaluator every strategy trains with: triplet InfoNCE training and val mAP every epoch.

:class:`HashingModule` is a traced NNI ``LightningModule``. Batches are small tagged index tensors
``(split_id, position)`` (see :class:`SplitIndex`); the module holds the features of the dataset in memory
(loaded once per process from the config path, so traced arguments and trial messages stay tiny) and
samples the paper's triplets per epoch from its seed. Because every batch names its split, NNI's DARTS can
take its architecture steps on validation triplets and ENAS can tell training from reward batches.

Metrics logged:

* ``train_loss`` every step;
* ``val_batch_mAP`` every validation step: retrieval mAP of the batch's videos against the rest of the
  same batch, all encoded by the architecture active for that batch (ENAS's reward);
* ``val_mAP`` every validation epoch: mAP@K of the validation queries against the retrieval database
  (SPEC §5), reported to NNI as an intermediate result inside a trial.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

import nni
import numpy as np
import torch
from nni.nas.evaluator.pytorch import DataLoader, Lightning, LightningModule, Trainer
from torch.utils.data import Dataset

from avnas_nni.codes import sign_codes
from avnas_nni.data import SPLITS, TripletSampler, load_dataset
from avnas_nni.loss import info_nce
from avnas_nni.metrics import leave_one_out_map, mean_average_precision

__all__ = ["SplitIndex", "HashingModule", "load_split", "encode", "make_evaluator", "SPLIT_IDS"]

logger = logging.getLogger(__name__)

#: Integer tag of each split inside a batch.
SPLIT_IDS = {name: i for i, name in enumerate(SPLITS)}


@lru_cache(maxsize=4)
def _dataset(data: str):
    return load_dataset(data, validate=False)


@lru_cache(maxsize=16)
def load_split(data: str, split: str) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Features and labels of one split, read once per process: ``(visual, audio, labels)``."""
    dataset = _dataset(data)
    visual, audio = dataset.features(split)
    return torch.from_numpy(visual), torch.from_numpy(audio), dataset.labels(split)


@nni.trace
class SplitIndex(Dataset):
    """Positions ``0 … n−1`` of one split, tagged with the split: items are ``(split_id, position)``.

    Parameters
    ----------
    data : str
        Dataset config path or ``"embedded"``.
    split : str
        ``train``, ``val``, ``test`` or ``retrieval``.
    """

    def __init__(self, data: str, split: str):
        if split not in SPLIT_IDS:
            raise ValueError(f"split: expected one of {list(SPLIT_IDS)}, got {split!r}")
        self.data, self.split = str(data), split
        self._n = len(_dataset(self.data).ids(split))

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, position: int) -> tuple[int, int]:
        return SPLIT_IDS[self.split], position


@torch.no_grad()
def encode(model: torch.nn.Module, visual: torch.Tensor, audio: torch.Tensor, batch_size: int = 256,
           device: torch.device | str | None = None) -> torch.Tensor:
    """Real-valued codes (n, q) of features (n, m, d), in batches, on ``device`` (default: the model's)."""
    device = device or next(model.parameters()).device
    outputs = [model(visual[i:i + batch_size].to(device), audio[i:i + batch_size].to(device)).float().cpu()
               for i in range(0, len(visual), batch_size)]
    return torch.cat(outputs)


@nni.trace
class HashingModule(LightningModule):
    """Trains a frozen or mixed hashing network with triplet InfoNCE; validates by retrieval mAP.

    Parameters
    ----------
    data : str
        Dataset config path or ``"embedded"``.
    lr, eps, weight_decay : float
        Adam settings of the network weights (SPEC §4: search 1e-3; fine-tune 1e-4 with eps 1e-3).
    tau : float
        InfoNCE temperature.
    n_neg : int
        Negatives per anchor (n0).
    in_batch_negatives : bool
        Also use the other anchors' positives of the batch as negatives (those sharing a class with the
        anchor are left out). Off: the paper's loss.
    topk : int
        K of the validation mAP@K.
    seed : int
        Fixes the triplets and the order of each epoch.
    eval_batch_size : int
        Batch size for encoding the database and the queries.
    query_split : str
        Queries of the epoch-level mAP (``val`` for model selection).
    report_to_nni : bool
        Send ``val_mAP`` to NNI as intermediate results and, when training ends, the best one as the final
        result (inside a trial, e.g. of NNI's multi-trial strategies).
    """

    def __init__(self, data: str = "embedded", lr: float = 1e-3, eps: float = 1e-8, weight_decay: float = 0.0,
                 tau: float = 0.1, n_neg: int = 4, topk: int = 100, seed: int = 3346, eval_batch_size: int = 256,
                 query_split: str = "val", report_to_nni: bool = False, in_batch_negatives: bool = False):
        super().__init__()
        self.data, self.lr, self.eps, self.weight_decay = str(data), lr, eps, weight_decay
        self.tau, self.n_neg, self.topk, self.seed = tau, n_neg, topk, seed
        self.in_batch_negatives = in_batch_negatives
        self.eval_batch_size, self.query_split, self.report_to_nni = eval_batch_size, query_split, report_to_nni
        self.history: list[dict[str, float]] = []
        self._epoch_cache: dict[str, tuple[int, np.ndarray, np.ndarray]] = {}
        self._samplers: dict[str, TripletSampler] = {}

    # -- data ---------------------------------------------------------------------------------------
    def _sampler(self, split: str) -> TripletSampler:
        if split not in self._samplers:
            self._samplers[split] = TripletSampler(load_split(self.data, split)[2], self.n_neg,
                                                   self.seed + SPLIT_IDS[split])
        return self._samplers[split]

    def _epoch_plan(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """This epoch's (order, triplets) of a split, a pure function of (seed, split, epoch)."""
        epoch = self.current_epoch
        cached = self._epoch_cache.get(split)
        if cached is None or cached[0] != epoch:
            sampler = self._sampler(split)
            order = np.random.default_rng([self.seed, SPLIT_IDS[split], epoch, 1]).permutation(len(sampler))
            cached = (epoch, order, sampler.epoch_triplets(epoch))
            self._epoch_cache[split] = cached
        return cached[1], cached[2]

    def triplet_loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """InfoNCE of the triplets whose anchors are at the batch's positions of this epoch's order."""
        split_ids, positions = batch
        split = SPLITS[int(split_ids[0])]
        order, triplets = self._epoch_plan(split)
        rows = torch.from_numpy(triplets[order[positions.cpu().numpy()]])  # (B, 2 + n0)
        visual, audio, labels = load_split(self.data, split)
        b, k = rows.shape
        flat = rows.reshape(-1)
        out = self.model(visual[flat].to(self.device), audio[flat].to(self.device)).view(b, k, -1)
        if self.in_batch_negatives:
            anchor_labels = torch.from_numpy(labels[rows[:, 0].numpy()]).to(self.device)
            return info_nce(out[:, 0], out[:, 1], out[:, 2:], tau=self.tau, in_batch_negatives=True,
                            labels=anchor_labels)
        return info_nce(out[:, 0], out[:, 1], out[:, 2:], tau=self.tau)

    # -- Lightning hooks ----------------------------------------------------------------------------
    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return self.model(visual, audio)

    def validation_score(self) -> float:
        """The model-selection score strategies may ask for (SPOS's evolution): val mAP@K."""
        return self.retrieval_map(self.query_split)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["avnas_history"] = list(self.history)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = list(checkpoint.get("avnas_history", []))

    def training_step(self, batch, batch_idx):
        # Dropout depends only on (seed, epoch, batch): a resumed run repeats it exactly, whatever else
        # (Lightning's loader set-up, NNI's sampling) drew from the global generator in between.
        torch.manual_seed((self.seed * 1_000_003 + self.current_epoch) * 1_000_003 + batch_idx)
        loss = self.triplet_loss(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()} at epoch {self.current_epoch}, "
                                     f"batch {batch_idx}; lower the learning rate or check the features")
        # batch_size: the triplets (Lightning cannot tell it from the (split ids, positions) pair and warns)
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(batch[1]))
        return loss

    def validation_step(self, batch, batch_idx):
        split_ids, positions = batch
        split = SPLITS[int(split_ids[0])]
        visual, audio, labels = load_split(self.data, split)
        idx = positions.cpu()
        codes = sign_codes(self.model(visual[idx].to(self.device), audio[idx].to(self.device)).float().cpu())
        codes, batch_labels = codes.numpy(), labels[idx.numpy()]
        if len(idx) > 1:  # leave-one-out retrieval inside the batch, with this batch's architecture
            ap = leave_one_out_map(codes, batch_labels)
            self.log("val_batch_mAP", ap, on_step=True, on_epoch=False, batch_size=len(idx))

    def on_validation_epoch_end(self):
        score = self.retrieval_map(self.query_split)
        self.log("val_mAP", score, prog_bar=True, on_epoch=True)
        if self.trainer is None or not self.trainer.sanity_checking:
            self.history.append({"epoch": self.current_epoch, "val_mAP": score})
            if self.report_to_nni:
                nni.report_intermediate_result(score)

    def on_fit_end(self):
        if self.report_to_nni and self.history:
            nni.report_final_result(max(row["val_mAP"] for row in self.history))

    def retrieval_map(self, query_split: str, database_split: str = "retrieval") -> float:
        """mAP@K of ``query_split`` against ``database_split`` with the current network (eval mode)."""
        was_training = self.model.training
        self.model.eval()
        try:
            qv, qa, ql = load_split(self.data, query_split)
            dv, da, dl = load_split(self.data, database_split)
            q = sign_codes(encode(self.model, qv, qa, self.eval_batch_size, self.device)).numpy()
            d = sign_codes(encode(self.model, dv, da, self.eval_batch_size, self.device)).numpy()
        finally:
            self.model.train(was_training)
        return float(mean_average_precision(q, d, ql, dl, topk=self.topk))

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.lr, eps=self.eps, weight_decay=self.weight_decay)


def make_evaluator(data: str = "embedded", *, max_epochs: int = 1, batch_size: int = 128, accelerator: str = "cpu",
                   limit_train_batches: int | float | None = None, callbacks: list | None = None,
                   trainer_kwargs: dict[str, Any] | None = None, fit_kwargs: dict[str, Any] | None = None,
                   **module_kwargs: Any) -> Lightning:
    """An NNI ``Lightning`` evaluator around :class:`HashingModule` with traced loaders and trainer.

    Training batches are positions in the training split (the triplets are drawn per epoch inside the
    module); validation batches are positions in the validation split.
    """
    module = HashingModule(data=data, **module_kwargs)
    train = DataLoader(SplitIndex(data, "train"), batch_size=batch_size, shuffle=False)
    val = DataLoader(SplitIndex(data, module.query_split), batch_size=batch_size, shuffle=False)
    kwargs = dict(max_epochs=max_epochs, accelerator=accelerator, devices=1, logger=False,
                  enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
                  enable_progress_bar=False, callbacks=callbacks or [])
    if limit_train_batches is not None:
        kwargs["limit_train_batches"] = limit_train_batches
    kwargs.update(trainer_kwargs or {})
    return Lightning(module, Trainer(**kwargs), train_dataloaders=train, val_dataloaders=val, fit_kwargs=fit_kwargs)
