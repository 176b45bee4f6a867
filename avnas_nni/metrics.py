"""Hamming-ranking retrieval metrics: mAP@K, P@K, R@K and the P-R curve (SPEC §5).

Conventions shared by every function here:

- **Codes.** Query and database codes are either ±1 arrays (n, q) (NumPy or torch; any numeric dtype) or
  packed uint8 arrays (n, ceil(q/8)) from :func:`avnas_nni.codes.pack_codes`. A uint8 array is always
  read as packed, so 0/1 bits must not be passed as uint8. The Hamming distance is ``½(q - b_q·b_d)``,
  computed by XOR and bit counting on the packed codes.
- **Labels.** Either 1-D integer class ids (n,) (single-label; relevance = equal ids) or multi-hot (n, C)
  arrays (bool or 0/1; relevance = at least one shared label). A 1-D array beside a 2-D one is turned
  into one-hot rows of the same width. A database item is relevant to a query when they share a label.
- **Ranking and ties.** The database is ranked by Hamming distance, ties broken by database index (a
  stable sort: among equal distances the item stored first ranks first). Every metric is therefore
  deterministic. Internally each item gets the integer key ``distance * n_database + index``, whose order
  is exactly this ranking, so a plain partition / sort of the keys gives the stable top K.
- **K beyond the database.** A cut-off K larger than the database is clipped to the database size
  (``K_eff = min(K, n_database)``), for P@K as well as for mAP@K.
- **Scale.** Queries are processed in chunks sized from ``memory_mb``; FCVID's 22,754 queries against
  45,508 database items at 64 bits take seconds (see ``benchmarks/metrics_speed.py``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np

from avnas_nni.codes import _as_words, _hamming_words, _to_numpy, pack_codes

__all__ = [
    "DEFAULT_KS",
    "mean_ci95",
    "average_precision_at_k",
    "leave_one_out_map",
    "mean_average_precision",
    "precision_recall_at_k",
    "pr_curve",
    "retrieval_report",
]

logger = logging.getLogger(__name__)

DEFAULT_KS: tuple[int, ...] = (5, 10, 20, 40, 60, 80, 100, 200)
"""The P@K / R@K cut-offs reported by default (paper §5.1 lineage)."""

Normalize = Literal["hits", "k"]


# ---------------------------------------------------------------------------------------------------------
# Input preparation
# ---------------------------------------------------------------------------------------------------------


def _prepare_one_code_set(codes: Any, name: str, where: str) -> tuple[np.ndarray, int | None]:
    """Return (packed uint8 (n, nbytes), q) for ±1 input, (packed, None) for packed input (q unknown)."""
    array = _to_numpy(codes)
    if array.ndim != 2 or array.shape[1] == 0:
        raise ValueError(f"{where}: {name} must be a 2-D (n, q) array of codes, got shape {array.shape}")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array), None
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{where}: {name} must be ±1 codes or packed uint8 codes, got dtype {array.dtype}")
    if not np.all((array == 1) | (array == -1)):
        raise ValueError(f"{where}: {name} must hold only -1 and +1 (or be packed uint8 codes)")
    return pack_codes(array), array.shape[1]


def _prepare_codes(
    query_codes: Any, database_codes: Any, where: str
) -> tuple[np.ndarray, np.ndarray, int | None]:
    """Return packed query and database codes and q when a ±1 input states it (None when both are packed)."""
    query_packed, query_bits = _prepare_one_code_set(query_codes, "query codes", where)
    database_packed, database_bits = _prepare_one_code_set(database_codes, "database codes", where)
    if query_packed.shape[1] != database_packed.shape[1] or (
        query_bits is not None and database_bits is not None and query_bits != database_bits
    ):
        describe = [
            f"{bits} bits" if bits is not None else f"{packed.shape[1]} packed bytes"
            for packed, bits in ((query_packed, query_bits), (database_packed, database_bits))
        ]
        raise ValueError(f"{where}: query codes have {describe[0]} but database codes have {describe[1]}")
    if query_packed.shape[0] == 0 or database_packed.shape[0] == 0:
        raise ValueError(
            f"{where}: need at least one query and one database item, got {query_packed.shape[0]} "
            f"queries and {database_packed.shape[0]} database items"
        )
    return query_packed, database_packed, query_bits if query_bits is not None else database_bits


def _labels_as_multi_hot(labels: np.ndarray, n_classes: int, name: str, where: str) -> np.ndarray:
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"{where}: {name} holds class ids outside [0, {n_classes}) (the multi-hot side has {n_classes})"
        )
    multi_hot = np.zeros((labels.shape[0], n_classes), dtype=bool)
    multi_hot[np.arange(labels.shape[0]), labels] = True
    return multi_hot


def _check_label_array(labels: Any, n_rows: int, name: str, where: str) -> np.ndarray:
    array = _to_numpy(labels)
    if array.ndim not in (1, 2) or array.shape[0] != n_rows:
        raise ValueError(
            f"{where}: {name} must have shape ({n_rows},) of class ids or ({n_rows}, C) multi-hot, "
            f"got {array.shape}"
        )
    if array.ndim == 1:
        if array.dtype.kind not in "iu":
            raise ValueError(f"{where}: 1-D {name} must be integer class ids, got dtype {array.dtype}")
        return array
    if array.dtype != bool:
        if array.dtype.kind not in "iuf" or not np.all((array == 0) | (array == 1)):
            raise ValueError(f"{where}: multi-hot {name} must be bool or 0/1, got dtype {array.dtype}")
        array = array.astype(bool)
    return array


class _SingleLabelRelevance:
    """Relevance for integer class ids: equal ids."""

    bytes_per_full_entry = 1  # the bool relevance mask

    def __init__(self, query_labels: np.ndarray, database_labels: np.ndarray) -> None:
        self.query_labels = query_labels.astype(np.int64, copy=False)
        self.database_labels = database_labels.astype(np.int64, copy=False)

    def top_k(self, rows: slice, database_index: np.ndarray) -> np.ndarray:
        return self.database_labels[database_index] == self.query_labels[rows, None]

    def full(self, rows: slice) -> np.ndarray:
        return self.database_labels[None, :] == self.query_labels[rows, None]

    def n_relevant(self, memory_mb: float) -> np.ndarray:
        classes, counts = np.unique(self.database_labels, return_counts=True)
        position = np.clip(np.searchsorted(classes, self.query_labels), 0, len(classes) - 1)
        return np.where(classes[position] == self.query_labels, counts[position], 0).astype(np.int64)


class _MultiLabelRelevance:
    """Relevance for multi-hot labels: at least one shared label (bitwise AND on packed label words)."""

    bytes_per_full_entry = 5  # the float32 label matmul and the bool mask

    def __init__(self, query_labels: np.ndarray, database_labels: np.ndarray) -> None:
        self.query_labels = query_labels
        self.database_labels = database_labels
        self.query_words = _as_words(np.packbits(query_labels, axis=1))
        self.database_words = _as_words(np.packbits(database_labels, axis=1))
        self._database_float_t: np.ndarray | None = None

    def top_k(self, rows: slice, database_index: np.ndarray) -> np.ndarray:
        shared = self.query_words[rows, None, :] & self.database_words[database_index]
        return shared.any(axis=-1)

    def full(self, rows: slice) -> np.ndarray:
        if self._database_float_t is None:
            self._database_float_t = np.ascontiguousarray(self.database_labels.T, dtype=np.float32)
        # float32 counts of shared labels are exact (C < 2**24).
        return (self.query_labels[rows].astype(np.float32) @ self._database_float_t) > 0

    def n_relevant(self, memory_mb: float) -> np.ndarray:
        # Items with the same label set are counted once: real label sets repeat a lot.
        unique_words, counts = np.unique(self.database_words, axis=0, return_counts=True)
        n_query = self.query_words.shape[0]
        result = np.empty(n_query, dtype=np.int64)
        row_bytes = unique_words.shape[0] * (unique_words.shape[1] * unique_words.itemsize + 2)
        rows = _chunk_rows(memory_mb, row_bytes)
        for start in range(0, n_query, rows):
            shared = (self.query_words[start : start + rows, None, :] & unique_words[None]).any(axis=-1)
            result[start : start + rows] = shared @ counts
        return result


def _prepare_labels(
    query_labels: Any, database_labels: Any, n_query: int, n_database: int, where: str
) -> _SingleLabelRelevance | _MultiLabelRelevance:
    query = _check_label_array(query_labels, n_query, "query labels", where)
    database = _check_label_array(database_labels, n_database, "database labels", where)
    if query.ndim == 1 and database.ndim == 1:
        return _SingleLabelRelevance(query, database)
    if query.ndim == 1:
        query = _labels_as_multi_hot(query, database.shape[1], "query labels", where)
    if database.ndim == 1:
        database = _labels_as_multi_hot(database, query.shape[1], "database labels", where)
    if query.shape[1] != database.shape[1]:
        raise ValueError(
            f"{where}: query labels have {query.shape[1]} classes, database labels {database.shape[1]}"
        )
    return _MultiLabelRelevance(query, database)


def _check_memory(memory_mb: float, where: str) -> None:
    if not memory_mb > 0:
        raise ValueError(f"{where}: memory_mb must be > 0, got {memory_mb}")


def _check_cutoff(value: Any, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{where}: {name} must be a positive int, got {value!r}")
    return int(value)


def _chunk_rows(memory_mb: float, bytes_per_row: int) -> int:
    return max(1, int(memory_mb * 2**20 // max(1, bytes_per_row)))


# ---------------------------------------------------------------------------------------------------------
# Ranking
# ---------------------------------------------------------------------------------------------------------


def _key_dtype(max_distance: int, n_database: int) -> type[np.signedinteger]:
    """int32 keys when ``distance * n_database + index`` always fits (half the memory traffic), else int64."""
    return np.int32 if (max_distance + 1) * n_database <= np.iinfo(np.int32).max else np.int64


def _iter_top_k(
    query_packed: np.ndarray, database_packed: np.ndarray, k: int, memory_mb: float
) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
    """Yield (query rows, distances (c, k), database indices (c, k)) of the stable top ``k``, chunk by chunk.

    ``k`` must already be clipped to the database size. Rows are sorted by (distance, database index).
    """
    n_query, n_database = query_packed.shape[0], database_packed.shape[0]
    query_words, database_words = _as_words(query_packed), _as_words(database_packed)
    key_dtype = _key_dtype(8 * query_packed.shape[1], n_database)
    key_size = np.dtype(key_dtype).itemsize
    database_index = np.arange(n_database, dtype=key_dtype)
    # Per query row: XOR words, per-word bit counts, their sum, and the integer key.
    bytes_per_row = n_database * (query_packed.shape[1] + query_words.shape[1] + 2 + key_size)
    rows = _chunk_rows(memory_mb, bytes_per_row)
    logger.debug("top-%d ranking: %d queries in chunks of %d rows, %s keys", k, n_query, rows, key_dtype)
    for start in range(0, n_query, rows):
        chunk = slice(start, min(start + rows, n_query))
        distance = _hamming_words(query_words[chunk], database_words)
        key = distance.astype(key_dtype)
        del distance
        key *= n_database
        key += database_index
        if k < n_database:
            key.partition(k - 1, axis=1)  # in place: the k smallest keys, unordered, come first
            key = key[:, :k]
        key = np.sort(key, axis=1)
        yield chunk, key // n_database, key % n_database


def _average_precision_rows(relevant: np.ndarray, normalize: Normalize, k_eff: int) -> np.ndarray:
    """AP of each row of a (c, K) relevance matrix ranked best first."""
    hits_so_far = np.cumsum(relevant, axis=1, dtype=np.int64)
    ranks = np.arange(1, relevant.shape[1] + 1)
    precision_sum = np.where(relevant, hits_so_far / ranks, 0.0).sum(axis=1)
    if normalize == "hits":
        n_hits = hits_so_far[:, -1]
        return np.where(n_hits > 0, precision_sum / np.maximum(n_hits, 1), 0.0)
    return precision_sum / k_eff


def _check_normalize(normalize: Any, where: str) -> Normalize:
    if normalize not in ("hits", "k"):
        raise ValueError(f"{where}: normalize must be 'hits' or 'k', got {normalize!r}")
    return normalize


def _check_ks(ks: Sequence[int], where: str) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks:
        raise ValueError(f"{where}: ks must hold at least one cut-off")
    return tuple(_check_cutoff(k, "every K in ks", where) for k in ks)


# ---------------------------------------------------------------------------------------------------------
# Public metrics
# ---------------------------------------------------------------------------------------------------------


def average_precision_at_k(
    query_codes: Any,
    database_codes: Any,
    query_labels: Any,
    database_labels: Any,
    topk: int | None = 100,
    normalize: Normalize = "hits",
    memory_mb: float = 512,
) -> np.ndarray:
    """AP@K of every query, the per-query terms of :func:`mean_average_precision`.

    Returns
    -------
    numpy.ndarray
        float64 of shape (n_query,). See :func:`mean_average_precision` for the parameters.
    """
    where = "average_precision_at_k"
    normalize = _check_normalize(normalize, where)
    _check_memory(memory_mb, where)
    query_packed, database_packed, _ = _prepare_codes(query_codes, database_codes, where)
    n_database = database_packed.shape[0]
    k_eff = n_database if topk is None else min(_check_cutoff(topk, "topk", where), n_database)
    relevance = _prepare_labels(query_labels, database_labels, query_packed.shape[0], n_database, where)
    result = np.empty(query_packed.shape[0], dtype=np.float64)
    for rows, _, index in _iter_top_k(query_packed, database_packed, k_eff, memory_mb):
        result[rows] = _average_precision_rows(relevance.top_k(rows, index), normalize, k_eff)
    return result


def mean_average_precision(
    query_codes: Any,
    database_codes: Any,
    query_labels: Any,
    database_labels: Any,
    topk: int | None = 100,
    normalize: Normalize = "hits",
    memory_mb: float = 512,
) -> float:
    """mAP@K of Hamming ranking, in the AV-NAS/AVHash form by default.

    For each query the database is ranked by Hamming distance ``½(q - b_q·b_d)``, ties broken by database
    index (stable sort), and cut at the top ``K_eff = min(topk, n_database)``. With ``rel_i`` = 1 when
    the item at rank ``i`` shares a label with the query, ``hits_i = Σ_{j<=i} rel_j`` and
    ``S = Σ_{i<=K_eff} rel_i · hits_i / i``:

    - ``normalize="hits"`` (default; AV-NAS/AVHash): ``AP = S / hits_{K_eff}``, the mean precision over
      the hit positions of the top K, and ``AP = 0`` when the top K holds no hit;
    - ``normalize="k"`` (BTH/ConMH lineage): ``AP = S / K_eff``.

    mAP is the mean of AP over **all** queries (zero-hit queries included as 0).

    Parameters
    ----------
    query_codes, database_codes : array_like or torch.Tensor
        ±1 codes (n, q) or packed uint8 codes (n, ceil(q/8)); see the module notes.
    query_labels, database_labels : array_like or torch.Tensor
        Class ids (n,) or multi-hot (n, C); relevance = at least one shared label.
    topk : int or None
        The cut-off K (Table 2 uses 100); ``None`` ranks the whole database.
    normalize : {"hits", "k"}
        The AP denominator, as above. Name it next to every reported number.
    memory_mb : float
        Working-memory budget; queries are processed in chunks sized to stay within it. The result does
        not depend on it.

    Returns
    -------
    float
        mAP@K in [0, 1].
    """
    per_query = average_precision_at_k(
        query_codes, database_codes, query_labels, database_labels, topk, normalize, memory_mb
    )
    return float(per_query.mean())


def leave_one_out_map(codes: Any, labels: Any, topk: int | None = None, normalize: Normalize = "hits") -> float:
    """mAP of every item against the others of the same (small) set, e.g. one validation batch.

    Item ``i`` is the query and the other items, in their stored order, are the database; everything else
    (ranking, ties by index, ``K_eff``, ``normalize``) is :func:`mean_average_precision`, so the result
    equals ``mean_i average_precision_at_k(codes[i], codes[others], labels[i], labels[others])``. The whole
    (n, n) distance matrix is built at once: meant for batches, not for a database.

    Parameters
    ----------
    codes : array_like or torch.Tensor
        ±1 codes (n, q) or packed uint8 codes, n ≥ 2.
    labels : array_like or torch.Tensor
        Class ids (n,) or multi-hot (n, C).
    topk : int or None
        The cut-off K; ``None`` (default) ranks all ``n - 1`` others.
    normalize : {"hits", "k"}
        The AP denominator, as in :func:`mean_average_precision`.

    Returns
    -------
    float
        The mean AP over the ``n`` items, in [0, 1].
    """
    where = "leave_one_out_map"
    normalize = _check_normalize(normalize, where)
    packed, _ = _prepare_one_code_set(codes, "codes", where)
    n = packed.shape[0]
    if n < 2:
        raise ValueError(f"{where}: need at least 2 items (one query and one other), got {n}")
    k_eff = n - 1 if topk is None else min(_check_cutoff(topk, "topk", where), n - 1)
    relevance = _prepare_labels(labels, labels, n, n, where)
    words = _as_words(packed)
    # The ranking key of _iter_top_k (distance * n + index); the item itself gets a key above every other, so
    # after the sort it is the dropped last column.
    key = _hamming_words(words, words).astype(np.int64) * n + np.arange(n)
    np.fill_diagonal(key, np.iinfo(np.int64).max)
    index = (np.sort(key, axis=1)[:, :k_eff]) % n
    return float(_average_precision_rows(relevance.top_k(slice(0, n), index), normalize, k_eff).mean())


def _precision_recall_from_hits(
    hits_so_far: np.ndarray, n_relevant: np.ndarray, ks: tuple[int, ...], n_database: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-query P@K (c, len(ks)), R@K (c, len(ks)) with NaN where undefined, from the running hit count."""
    columns = np.array([min(k, n_database) for k in ks])
    hits = hits_so_far[:, columns - 1]
    precision = hits / columns
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(n_relevant[:, None] > 0, hits / n_relevant[:, None], np.nan)
    return precision, recall, hits


def precision_recall_at_k(
    query_codes: Any,
    database_codes: Any,
    query_labels: Any,
    database_labels: Any,
    ks: Sequence[int] = DEFAULT_KS,
    memory_mb: float = 512,
) -> dict[str, np.ndarray]:
    """P@K and R@K of Hamming ranking (ties broken by database index, stable sort).

    ``P@K = (relevant items in the top K_eff) / K_eff`` with ``K_eff = min(K, n_database)``, averaged over
    all queries. ``R@K = (relevant items in the top K_eff) / (relevant items in the whole database)``,
    averaged over the queries that have at least one relevant item in the database; the others are left
    out of the recall mean (their recall is undefined). R@K is NaN when no query has a relevant item.

    Parameters
    ----------
    query_codes, database_codes, query_labels, database_labels
        As in :func:`mean_average_precision`.
    ks : sequence of int
        The cut-offs, reported in the given order.
    memory_mb : float
        Working-memory budget (the result does not depend on it).

    Returns
    -------
    dict
        ``{"k": int array, "precision": float array, "recall": float array}``, one entry per cut-off, and
        ``"n_queries_with_relevant"``: a 0-d int array, the number of queries in the recall mean.
    """
    where = "precision_recall_at_k"
    ks = _check_ks(ks, where)
    _check_memory(memory_mb, where)
    query_packed, database_packed, _ = _prepare_codes(query_codes, database_codes, where)
    n_query, n_database = query_packed.shape[0], database_packed.shape[0]
    relevance = _prepare_labels(query_labels, database_labels, n_query, n_database, where)
    n_relevant = relevance.n_relevant(memory_mb)
    precision_sum = np.zeros(len(ks))
    recall_sum = np.zeros(len(ks))
    k_max = min(max(ks), n_database)
    for rows, _, index in _iter_top_k(query_packed, database_packed, k_max, memory_mb):
        hits_so_far = np.cumsum(relevance.top_k(rows, index), axis=1, dtype=np.int64)
        precision, recall, _ = _precision_recall_from_hits(hits_so_far, n_relevant[rows], ks, n_database)
        precision_sum += precision.sum(axis=0)
        recall_sum += np.nansum(recall, axis=0)
    n_with_relevant = int(np.count_nonzero(n_relevant))
    if n_with_relevant == 0:
        logger.warning("%s: no query has a relevant item in the database; R@K is NaN", where)
    return {
        "k": np.array(ks),
        "precision": precision_sum / n_query,
        "recall": recall_sum / n_with_relevant if n_with_relevant else np.full(len(ks), np.nan),
        "n_queries_with_relevant": np.array(n_with_relevant),
    }


def pr_curve(
    query_codes: Any,
    database_codes: Any,
    query_labels: Any,
    database_labels: Any,
    n_bits: int | None = None,
    memory_mb: float = 512,
) -> dict[str, np.ndarray]:
    """Precision and recall of Hamming-radius retrieval at every radius r = 0..q (the hashing P-R curve).

    A query retrieves every database item within Hamming distance ``r``. At each radius:

    - precision = (relevant retrieved) / (retrieved), averaged over the queries that retrieve at least one
      item at that radius (NaN where none does); ``"n_queries_retrieving"`` gives that count;
    - recall = (relevant retrieved) / (relevant in the database), averaged over the queries with at least
      one relevant item in the database (as in :func:`precision_recall_at_k`).

    Parameters
    ----------
    query_codes, database_codes, query_labels, database_labels
        As in :func:`mean_average_precision`.
    n_bits : int, optional
        Code length q. Needed only when both code sets are packed and q is not a multiple of 8 (packed
        input alone gives ``8 * nbytes``); for ±1 input it must equal q if given.
    memory_mb : float
        Working-memory budget (the result does not depend on it).

    Returns
    -------
    dict
        ``{"radius": (q+1,) int, "precision": (q+1,) float, "recall": (q+1,) float,
        "n_queries_retrieving": (q+1,) int}``.
    """
    where = "pr_curve"
    _check_memory(memory_mb, where)
    query_packed, database_packed, code_bits = _prepare_codes(query_codes, database_codes, where)
    packed_bits = 8 * query_packed.shape[1]
    if n_bits is not None:
        n_bits = _check_cutoff(n_bits, "n_bits", where)
        if (code_bits is not None and n_bits != code_bits) or not packed_bits - 8 < n_bits <= packed_bits:
            stated = f"{code_bits} bits" if code_bits is not None else f"{packed_bits // 8} packed bytes"
            raise ValueError(f"{where}: n_bits={n_bits} does not fit codes of {stated}")
        code_bits = n_bits
    elif code_bits is None:
        code_bits = packed_bits
    n_query, n_database = query_packed.shape[0], database_packed.shape[0]
    relevance = _prepare_labels(query_labels, database_labels, n_query, n_database, where)
    query_words, database_words = _as_words(query_packed), _as_words(database_packed)
    n_radii = code_bits + 1

    precision_sum = np.zeros(n_radii)
    recall_sum = np.zeros(n_radii)
    n_retrieving = np.zeros(n_radii, dtype=np.int64)
    n_with_relevant = 0
    # Distances with their temporaries, the int64 histogram index, the relevance mask and its selection.
    bytes_per_row = n_database * (query_packed.shape[1] + query_words.shape[1] + 2 + 8 + 8)
    bytes_per_row += n_database * relevance.bytes_per_full_entry
    rows = _chunk_rows(memory_mb, bytes_per_row)
    for start in range(0, n_query, rows):
        chunk = slice(start, min(start + rows, n_query))
        n_rows = chunk.stop - chunk.start
        distance = _hamming_words(query_words[chunk], database_words)
        if int(distance.max()) >= n_radii:
            raise ValueError(f"{where}: a distance exceeds n_bits={code_bits}; are the padding bits equal?")
        # One histogram bin per (query, distance): bincount of row * n_radii + distance.
        bin_index = distance.astype(np.int64)
        del distance
        bin_index += (np.arange(n_rows, dtype=np.int64) * n_radii)[:, None]
        relevant = relevance.full(chunk)
        n_bins = n_rows * n_radii
        retrieved_at = np.bincount(bin_index.ravel(), minlength=n_bins).reshape(n_rows, n_radii)
        relevant_at = np.bincount(bin_index[relevant], minlength=n_bins).reshape(n_rows, n_radii)
        del bin_index
        retrieved_within = np.cumsum(retrieved_at, axis=1)
        relevant_within = np.cumsum(relevant_at, axis=1)
        n_relevant = relevant.sum(axis=1)
        del relevant
        retrieving = retrieved_within > 0
        n_retrieving += retrieving.sum(axis=0)
        precision_sum += (relevant_within / np.maximum(retrieved_within, 1)).sum(axis=0)
        has_relevant = n_relevant > 0
        n_with_relevant += int(has_relevant.sum())
        recall_sum += (relevant_within[has_relevant] / n_relevant[has_relevant, None]).sum(axis=0)

    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(n_retrieving > 0, precision_sum / n_retrieving, np.nan)
    if n_with_relevant == 0:
        logger.warning("%s: no query has a relevant item in the database; recall is NaN", where)
        recall = np.full(n_radii, np.nan)
    else:
        recall = recall_sum / n_with_relevant
    return {
        "radius": np.arange(n_radii),
        "precision": precision,
        "recall": recall,
        "n_queries_retrieving": n_retrieving,
    }


def retrieval_report(
    query_codes: Any,
    database_codes: Any,
    query_labels: Any,
    database_labels: Any,
    topk: int = 100,
    ks: Sequence[int] = DEFAULT_KS,
    normalize: Normalize = "hits",
    memory_mb: float = 512,
) -> dict[str, float]:
    """mAP@K, P@K and R@K from one ranking pass, as a JSON-friendly dict of floats.

    Keys: ``"mAP@{topk}"`` then ``"P@{k}"`` and ``"R@{k}"`` for every k in ``ks``. The definitions, the
    tie-break (database index) and the ``normalize`` choice are those of :func:`mean_average_precision`
    and :func:`precision_recall_at_k`; R@K is NaN when no query has a relevant item in the database.
    """
    where = "retrieval_report"
    normalize = _check_normalize(normalize, where)
    topk = _check_cutoff(topk, "topk", where)
    ks = _check_ks(ks, where)
    _check_memory(memory_mb, where)
    query_packed, database_packed, _ = _prepare_codes(query_codes, database_codes, where)
    n_query, n_database = query_packed.shape[0], database_packed.shape[0]
    relevance = _prepare_labels(query_labels, database_labels, n_query, n_database, where)
    n_relevant = relevance.n_relevant(memory_mb)
    k_map = min(topk, n_database)
    k_max = min(max(max(ks), topk), n_database)

    ap_sum = 0.0
    precision_sum = np.zeros(len(ks))
    recall_sum = np.zeros(len(ks))
    # The stable ranking is a total order, so the top k_map is the first k_map columns of the top k_max.
    for rows, _, index in _iter_top_k(query_packed, database_packed, k_max, memory_mb):
        relevant = relevance.top_k(rows, index)
        ap_sum += float(_average_precision_rows(relevant[:, :k_map], normalize, k_map).sum())
        hits_so_far = np.cumsum(relevant, axis=1, dtype=np.int64)
        precision, recall, _ = _precision_recall_from_hits(hits_so_far, n_relevant[rows], ks, n_database)
        precision_sum += precision.sum(axis=0)
        recall_sum += np.nansum(recall, axis=0)

    n_with_relevant = int(np.count_nonzero(n_relevant))
    report: dict[str, float] = {f"mAP@{topk}": ap_sum / n_query}
    for position, k in enumerate(ks):
        report[f"P@{k}"] = float(precision_sum[position] / n_query)
    for position, k in enumerate(ks):
        report[f"R@{k}"] = float(recall_sum[position] / n_with_relevant) if n_with_relevant else math.nan
    return report


def mean_ci95(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """(mean, half-width of the two-sided 95 % Student-t confidence interval of the mean) of ``values``, e.g. a
    metric over seeds; NaN values are dropped, and the half-width is NaN for fewer than two values."""
    from scipy import stats  # imported here: the metrics above need only numpy

    array = np.asarray(values, dtype=float)
    array = array[~np.isnan(array)]
    if len(array) < 2:
        return (float(array.mean()) if len(array) else float("nan")), float("nan")
    half = stats.t.ppf(0.975, len(array) - 1) * array.std(ddof=1) / math.sqrt(len(array))
    return float(array.mean()), float(half)
