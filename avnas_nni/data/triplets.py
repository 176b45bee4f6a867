"""Triplet sampling as the paper trains (SPEC §3) and the torch datasets built on it.

Per anchor: one positive, another video sharing at least one class with the anchor (drawn uniformly from
the videos of the anchor's classes; when the anchor is the only video of its classes it is its own
positive, counted in :attr:`TripletSampler.self_positive_anchors`), and ``n_neg`` negatives (n0 = 4 in the
paper), each from a different class the anchor does not have, and each sharing no label with the anchor
(a multi-label video of a negative class that also carries one of the anchor's classes is never drawn).

Sampling is a pure function of ``(seed, epoch)``: the same pair gives the same triplets, another epoch
gives others.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["TripletSampler", "TripletDataset", "FeatureSet"]

logger = logging.getLogger(__name__)

# Rejection rounds for negatives before falling back to an exact draw (needed only with many
# multi-label videos that share a label with the anchor).
_REJECTION_ROUNDS = 8


class TripletSampler:
    """Draw (anchor, positive, negatives...) index rows for every video of a labelled set.

    Parameters
    ----------
    labels : array_like
        (n, num_class) multi-hot labels (bool or 0/1); every video needs at least one label.
    n_neg : int
        Negatives per anchor (n0; 4 in the paper), each of a distinct class.
    seed : int
        Base seed; epoch ``e`` samples from ``numpy.random.default_rng([seed, e])``.

    Attributes
    ----------
    self_positive_anchors : np.ndarray
        Indices of anchors with no other video of their classes: their positive is themselves.

    Raises
    ------
    ValueError
        Labels not 2-D, a video without labels, or an anchor with fewer than ``n_neg`` classes it could
        draw a negative from.
    """

    def __init__(self, labels: np.ndarray, n_neg: int = 4, seed: int = 0) -> None:
        matrix = np.asarray(labels).astype(bool)
        if matrix.ndim != 2 or matrix.shape[0] == 0:
            raise ValueError(f"labels must be a non-empty (n, num_class) multi-hot matrix, got shape {matrix.shape}")
        if isinstance(n_neg, bool) or not isinstance(n_neg, int | np.integer) or n_neg < 0:
            raise ValueError(f"n_neg must be a non-negative integer, got {n_neg!r}")
        empty = np.flatnonzero(~matrix.any(axis=1))
        if empty.size:
            raise ValueError(f"video {int(empty[0])} has no label ({empty.size} videos without labels)")
        self.labels = matrix
        self.n_neg = int(n_neg)
        self.seed = int(seed)
        num_class = matrix.shape[1]
        members = [np.flatnonzero(matrix[:, k]) for k in range(num_class)]
        self._class_sizes = np.array([len(m) for m in members], dtype=np.int64)
        self._class_offsets = np.concatenate([[0], np.cumsum(self._class_sizes)[:-1]])
        self._class_members = np.concatenate(members)
        # Anchors grouped by their exact label set: positives and eligible negative classes depend on it only.
        label_sets, self._group_of = np.unique(matrix, axis=0, return_inverse=True)
        self._group_of = self._group_of.reshape(-1)
        self._groups: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self_positive = []
        for g, label_set in enumerate(label_sets):
            anchors = np.flatnonzero(self._group_of == g)
            classes = np.flatnonzero(label_set)
            sharing = matrix[:, classes].any(axis=1)
            pool = np.flatnonzero(sharing)  # every video sharing a class, the anchors included
            # Eligible negative class: not the anchor's, and holding a video that shares no anchor label.
            clean = self._class_sizes - matrix[sharing].sum(axis=0)
            eligible = np.flatnonzero(~label_set & (clean > 0))
            if eligible.size < self.n_neg:
                raise ValueError(
                    f"video {int(anchors[0])} (classes {classes.tolist()}) has {eligible.size} classes to "
                    f"draw negatives from, fewer than n_neg={self.n_neg} distinct negative classes"
                )
            if pool.size == 1:
                self_positive.append(anchors)
            self._groups.append((anchors, classes, pool, eligible))
        self.self_positive_anchors = (
            np.sort(np.concatenate(self_positive)) if self_positive else np.zeros(0, dtype=np.int64)
        )
        if self.self_positive_anchors.size:
            logger.warning(
                "%d anchors are the only video of their classes and serve as their own positive",
                self.self_positive_anchors.size,
            )

    def __len__(self) -> int:
        return self.labels.shape[0]

    def epoch_triplets(self, epoch: int) -> np.ndarray:
        """The triplets of one epoch.

        Parameters
        ----------
        epoch : int
            Any integer; with the seed it determines the draw.

        Returns
        -------
        np.ndarray
            (n, 2 + n_neg) int64: column 0 the anchor (row i is anchor i), column 1 its positive, then the
            negatives, whose classes are distinct.
        """
        rng = np.random.default_rng([self.seed, int(epoch)])
        n = len(self)
        out = np.empty((n, 2 + self.n_neg), dtype=np.int64)
        out[:, 0] = np.arange(n)
        for anchors, classes, pool, eligible in self._groups:
            count = anchors.size
            if pool.size == 1:
                out[anchors, 1] = anchors
            else:
                # Uniform over the pool without the anchor: draw among pool.size - 1 slots, skip the anchor's.
                slot = rng.integers(0, pool.size - 1, size=count)
                slot += slot >= np.searchsorted(pool, anchors)
                out[anchors, 1] = pool[slot]
            if self.n_neg == 0:
                continue
            # n_neg distinct classes per anchor: the first n_neg of a random permutation of the eligible ones.
            picks = np.argsort(rng.random((count, eligible.size)), axis=1)[:, : self.n_neg]
            neg_classes = eligible[picks]
            out[anchors, 2:] = self._draw_clean(rng, neg_classes, classes)
        return out

    def _draw_clean(self, rng: np.random.Generator, neg_classes: np.ndarray, anchor_classes: np.ndarray):
        """One video per entry of ``neg_classes`` carrying none of ``anchor_classes``."""
        sizes = self._class_sizes[neg_classes]
        offsets = self._class_offsets[neg_classes]
        videos = self._class_members[offsets + (rng.random(neg_classes.shape) * sizes).astype(np.int64)]
        for _ in range(_REJECTION_ROUNDS):
            bad = self.labels[videos[..., None], anchor_classes].any(axis=-1)
            if not bad.any():
                return videos
            redo = (rng.random(int(bad.sum())) * sizes[bad]).astype(np.int64)
            videos[bad] = self._class_members[offsets[bad] + redo]
        # Rare: draw the stragglers exactly from the clean members of their class.
        bad = self.labels[videos[..., None], anchor_classes].any(axis=-1)
        for index in zip(*np.nonzero(bad), strict=True):
            k = neg_classes[index]
            start = self._class_offsets[k]
            candidates = self._class_members[start : start + self._class_sizes[k]]
            candidates = candidates[~self.labels[candidates[:, None], anchor_classes].any(axis=1)]
            videos[index] = candidates[rng.integers(candidates.size)]
        return videos


def _as_float_tensor(name: str, array) -> torch.Tensor:
    tensor = torch.as_tensor(array)
    if tensor.dim() != 3:
        raise ValueError(f"{name} must be (n, m, d), got shape {tuple(tensor.shape)}")
    return tensor.float()


class FeatureSet(Dataset):
    """Per-video dataset of audio-visual features, for encoding the val/test/database splits.

    Parameters
    ----------
    visual, audio : array_like
        (n, m, d) features; float32 arrays are shared, not copied.

    Notes
    -----
    ``dataset[i]`` is ``(visual[i], audio[i])``, each an (m, d) float32 tensor.
    """

    def __init__(self, visual, audio) -> None:
        self.visual = _as_float_tensor("visual", visual)
        self.audio = _as_float_tensor("audio", audio)
        if self.visual.shape[0] != self.audio.shape[0]:
            raise ValueError(
                f"visual and audio hold different numbers of videos: {self.visual.shape[0]} vs {self.audio.shape[0]}"
            )

    def __len__(self) -> int:
        return self.visual.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.visual[index], self.audio[index]


class TripletDataset(FeatureSet):
    """Training dataset: item ``i`` is anchor ``i`` with its positive and negatives for the current epoch.

    Parameters
    ----------
    visual, audio : array_like
        (n, m, d) features of the training split.
    labels : array_like
        (n, num_class) multi-hot labels.
    n_neg : int
        Negatives per anchor (n0 = 4 in the paper).
    seed : int
        Sampling seed; see :class:`TripletSampler`.

    Notes
    -----
    ``dataset[i]`` is ``(visual, audio)``, each a (2 + n_neg, m, d) float32 tensor stacking the anchor,
    the positive and the negatives. Call :meth:`set_epoch` before each epoch's loader iteration (with
    ``persistent_workers`` a worker keeps the epoch it was started with).
    """

    def __init__(self, visual, audio, labels, n_neg: int = 4, seed: int = 0) -> None:
        super().__init__(visual, audio)
        self.sampler = TripletSampler(labels, n_neg=n_neg, seed=seed)
        if len(self.sampler) != len(self):
            raise ValueError(f"labels hold {len(self.sampler)} videos, features {len(self)}")
        self.epoch = 0
        self._triplets: torch.Tensor | None = None

    def set_epoch(self, epoch: int) -> None:
        """Switch to the triplets of ``epoch``."""
        if int(epoch) != self.epoch:
            self.epoch = int(epoch)
            self._triplets = None

    @property
    def triplets(self) -> torch.Tensor:
        """(n, 2 + n_neg) int64 indices of the current epoch."""
        if self._triplets is None:
            self._triplets = torch.from_numpy(self.sampler.epoch_triplets(self.epoch))
        return self._triplets

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.triplets[index]
        return self.visual[rows], self.audio[rows]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_triplets"] = None  # recomputed from (seed, epoch) on the other side
        return state
