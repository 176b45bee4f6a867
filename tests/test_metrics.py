"""Tests of the retrieval metrics against hand-worked examples and a brute-force per-query reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avnas_nni import metrics
from avnas_nni.codes import pack_codes
from avnas_nni.metrics import (
    average_precision_at_k,
    leave_one_out_map,
    mean_average_precision,
    pr_curve,
    precision_recall_at_k,
    retrieval_report,
)

# ---------------------------------------------------------------------------------------------------------
# Brute force: one query at a time, python sorted() on (distance, index).
# ---------------------------------------------------------------------------------------------------------


def _shares_label(query_label, database_label) -> bool:
    if np.ndim(query_label) == 0:
        return bool(query_label == database_label)
    return bool(np.any(np.logical_and(query_label, database_label)))


def _brute_force(query_codes, database_codes, query_labels, database_labels, topk, normalize, ks):
    q = query_codes.shape[1]
    n_database = database_codes.shape[0]
    ap, precision, recall, curve_p, curve_r = [], [], [], [], []
    for i in range(query_codes.shape[0]):
        distance = [
            (q - int(np.dot(query_codes[i].astype(int), database_codes[j].astype(int)))) // 2
            for j in range(n_database)
        ]
        order = sorted(range(n_database), key=lambda j: (distance[j], j))
        relevant = [_shares_label(query_labels[i], database_labels[j]) for j in order]
        k_eff = n_database if topk is None else min(topk, n_database)
        hits, precision_sum = 0, 0.0
        for rank, is_relevant in enumerate(relevant[:k_eff], start=1):
            if is_relevant:
                hits += 1
                precision_sum += hits / rank
        if normalize == "hits":
            ap.append(precision_sum / hits if hits else 0.0)
        else:
            ap.append(precision_sum / k_eff)
        total_relevant = sum(relevant)
        precision.append([sum(relevant[: min(k, n_database)]) / min(k, n_database) for k in ks])
        if total_relevant:
            recall.append([sum(relevant[:k]) / total_relevant for k in ks])
        p_row, r_row = [], []
        for radius in range(q + 1):
            within = [j for j in range(n_database) if distance[j] <= radius]
            relevant_within = sum(_shares_label(query_labels[i], database_labels[j]) for j in within)
            p_row.append(relevant_within / len(within) if within else math.nan)
            r_row.append(relevant_within / total_relevant if total_relevant else math.nan)
        curve_p.append(p_row)
        curve_r.append(r_row)
    return {
        "ap": np.array(ap),
        "precision": np.mean(precision, axis=0),
        "recall": np.mean(recall, axis=0) if recall else np.full(len(ks), np.nan),
        "curve_precision": _mean_ignoring_nan(np.array(curve_p)),
        "curve_recall": _mean_ignoring_nan(np.array(curve_r)),
    }


def _mean_ignoring_nan(rows: np.ndarray) -> np.ndarray:
    """Column means over the defined (non-NaN) entries; NaN for a column with none."""
    defined = ~np.isnan(rows)
    counts = defined.sum(axis=0)
    sums = np.where(defined, rows, 0.0).sum(axis=0)
    return np.array([total / count if count else math.nan for total, count in zip(sums, counts, strict=True)])


def _random_case(seed: int, n_query: int, n_database: int, q: int, multi_label: bool, n_classes: int = 4):
    rng = np.random.default_rng(seed)
    query_codes = rng.choice(np.array([-1, 1], dtype=np.int8), size=(n_query, q))
    # Few distinct database codes: lots of exact ties in Hamming distance.
    palette = rng.choice(np.array([-1, 1], dtype=np.int8), size=(7, q))
    database_codes = palette[rng.integers(0, 7, n_database)]
    if multi_label:
        query_labels = rng.random((n_query, n_classes)) < 0.3
        database_labels = rng.random((n_database, n_classes)) < 0.3
    else:
        query_labels = rng.integers(0, n_classes, n_query)
        database_labels = rng.integers(0, n_classes, n_database)
    return query_codes, database_codes, query_labels, database_labels


KS = (1, 3, 10, 25, 60, 80)


@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize("q", [8, 12])
@pytest.mark.parametrize("seed", [0, 1])
def test_against_brute_force(seed: int, q: int, multi_label: bool) -> None:
    case = _random_case(seed, n_query=25, n_database=60, q=q, multi_label=multi_label)
    for topk in (1, 7, 100, None):
        for normalize in ("hits", "k"):
            expected = _brute_force(*case, topk, normalize, KS)
            got = average_precision_at_k(*case, topk=topk, normalize=normalize)
            np.testing.assert_allclose(got, expected["ap"], rtol=1e-12, atol=1e-15)
            assert mean_average_precision(*case, topk=topk, normalize=normalize) == pytest.approx(
                expected["ap"].mean(), rel=1e-12
            )
    expected = _brute_force(*case, 100, "hits", KS)
    pr = precision_recall_at_k(*case, ks=KS)
    np.testing.assert_array_equal(pr["k"], KS)
    np.testing.assert_allclose(pr["precision"], expected["precision"], rtol=1e-12)
    np.testing.assert_allclose(pr["recall"], expected["recall"], rtol=1e-12)
    curve = pr_curve(*case)
    np.testing.assert_array_equal(curve["radius"], np.arange(q + 1))
    np.testing.assert_allclose(curve["precision"], expected["curve_precision"], rtol=1e-12)
    np.testing.assert_allclose(curve["recall"], expected["curve_recall"], rtol=1e-12)


def test_multi_label_case_has_queries_without_relevant_items() -> None:
    # Guard for the brute-force test above: the recall exclusion rule is actually exercised.
    _, _, query_labels, database_labels = _random_case(1, 25, 60, 8, multi_label=True)
    n_relevant = (query_labels.astype(int) @ database_labels.T.astype(int) > 0).sum(axis=1)
    assert (n_relevant == 0).any() and (n_relevant > 0).any()


# ---------------------------------------------------------------------------------------------------------
# Hand-worked example: 2 queries, 5 database items, q = 4.
# ---------------------------------------------------------------------------------------------------------
#   item  code   label  dist to query 0 (++++)  dist to query 1 (----)
#   d0    ++++   1      0                       4
#   d1    +++-   0      1                       3
#   d2    ++++   0      0                       4
#   d3    --++   1      2                       2
#   d4    ----   0      4                       0
# Query 0 (label 0): ranking d0, d2 (tie at 0, index order), d1, d3, d4 -> relevance 0 1 1 0 1.
# Query 1 (label 1): ranking d4, d3, d1, d0, d2 (tie at 4, index order) -> relevance 0 1 0 1 0.
HAND_QUERY_CODES = np.array([[1, 1, 1, 1], [-1, -1, -1, -1]])
HAND_DATABASE_CODES = np.array([[1, 1, 1, 1], [1, 1, 1, -1], [1, 1, 1, 1], [-1, -1, 1, 1], [-1, -1, -1, -1]])
HAND_QUERY_LABELS = np.array([0, 1])
HAND_DATABASE_LABELS = np.array([1, 0, 0, 1, 0])
HAND = (HAND_QUERY_CODES, HAND_DATABASE_CODES, HAND_QUERY_LABELS, HAND_DATABASE_LABELS)


def test_hand_worked_map_at_3() -> None:
    # Top 3. Query 0: 0 1 1 -> hits at ranks 2, 3: AP = (1/2 + 2/3) / 2 = 7/12 (hits form),
    #   (1/2 + 2/3) / 3 = 7/18 (K form). Query 1: 0 1 0 -> AP = (1/2) / 1 = 1/2, (1/2) / 3 = 1/6.
    # mAP@3 = (7/12 + 1/2) / 2 = 13/24 (hits), (7/18 + 1/6) / 2 = 5/18 (K).
    np.testing.assert_allclose(average_precision_at_k(*HAND, topk=3), [7 / 12, 1 / 2])
    assert mean_average_precision(*HAND, topk=3) == pytest.approx(13 / 24)
    assert mean_average_precision(*HAND, topk=3, normalize="k") == pytest.approx(5 / 18)


def test_hand_worked_tie_break_by_database_index() -> None:
    # If d2 ranked before d0 (its tie partner), query 0's top 3 would be 1 0 1 -> AP (1 + 2/3)/2 = 5/6;
    # index order puts d0 first -> 7/12. Swapping the labels of d0 and d2 (same code) gives 5/6.
    assert average_precision_at_k(*HAND, topk=3)[0] == pytest.approx(7 / 12)
    swapped = (*HAND[:3], HAND_DATABASE_LABELS[[2, 1, 0, 3, 4]])
    assert average_precision_at_k(*swapped, topk=3)[0] == pytest.approx(5 / 6)


def test_hand_worked_whole_database_and_k_beyond_it() -> None:
    # Whole ranking. Query 0: 0 1 1 0 1 -> (1/2 + 2/3 + 3/5) / 3 = 53/90. Query 1: 0 1 0 1 0 ->
    # (1/2 + 2/4) / 2 = 1/2 = 45/90. mAP = 98/180 = 49/90.
    assert mean_average_precision(*HAND, topk=None) == pytest.approx(49 / 90)
    # K = 10 > 5 items: clipped to 5, the same as the whole database.
    assert mean_average_precision(*HAND, topk=10) == pytest.approx(49 / 90)
    # K form, K clipped to 5: query 0 (53/30) / 5 = 53/150, query 1 (1) / 5 = 1/5; mean = 83/300.
    assert mean_average_precision(*HAND, topk=10, normalize="k") == pytest.approx(83 / 300)


def test_hand_worked_precision_recall_at_k() -> None:
    # P@2: query 0 top 2 = 0 1 -> 1/2; query 1 top 2 = 0 1 -> 1/2. P@2 = 1/2.
    # R@2: query 0 has 3 relevant items (d1, d2, d4) -> 1/3; query 1 has 2 (d0, d3) -> 1/2. R@2 = 5/12.
    # P@10 (clipped to 5): 3/5 and 2/5 -> 1/2; R@10 = 1.
    pr = precision_recall_at_k(*HAND, ks=(2, 10))
    np.testing.assert_allclose(pr["precision"], [1 / 2, 1 / 2])
    np.testing.assert_allclose(pr["recall"], [5 / 12, 1.0])
    assert int(pr["n_queries_with_relevant"]) == 2


def test_hand_worked_pr_curve() -> None:
    # Distances: query 0 -> (0, 1, 0, 2, 4), relevance (0, 1, 1, 0, 1) by item;
    #            query 1 -> (4, 3, 4, 2, 0), relevance (1, 0, 0, 1, 0).
    # radius:            0      1      2      3       4
    # query 0 P / R:   1/2,1/3 2/3,2/3 2/4,2/3 2/4,2/3 3/5,1
    # query 1 P / R:     0,0     0,0   1/2,1/2 1/3,1/2 2/5,1
    curve = pr_curve(*HAND)
    np.testing.assert_allclose(curve["precision"], [1 / 4, 1 / 3, 1 / 2, 5 / 12, 1 / 2])
    np.testing.assert_allclose(curve["recall"], [1 / 6, 1 / 3, 7 / 12, 7 / 12, 1.0])
    np.testing.assert_array_equal(curve["n_queries_retrieving"], [2, 2, 2, 2, 2])


def test_hand_worked_report() -> None:
    report = retrieval_report(*HAND, topk=3, ks=(2, 10))
    assert list(report) == ["mAP@3", "P@2", "P@10", "R@2", "R@10"]
    assert all(type(value) is float for value in report.values())
    assert report["mAP@3"] == pytest.approx(13 / 24)
    assert report["P@2"] == pytest.approx(1 / 2) and report["R@2"] == pytest.approx(5 / 12)


def test_multi_hot_shares_at_least_one_label() -> None:
    # One query with labels {0, 1}; items with {1, 2} (relevant), {2} (not), {0} (relevant), {} (not).
    query_labels = np.array([[1, 1, 0]])
    database_labels = np.array([[0, 1, 1], [0, 0, 1], [1, 0, 0], [0, 0, 0]])
    query_codes = np.ones((1, 8))
    database_codes = np.ones((4, 8))  # all tie: index order -> relevance 1 0 1 0
    # AP (hits) = (1/1 + 2/3) / 2 = 5/6.
    assert mean_average_precision(
        query_codes, database_codes, query_labels, database_labels
    ) == pytest.approx(5 / 6)
    # Class ids on the query side are turned into one-hot rows: query class 2 -> items 0, 1 relevant.
    assert mean_average_precision(query_codes, database_codes, np.array([2]), database_labels) == 1.0


# ---------------------------------------------------------------------------------------------------------
# Edge cases
# ---------------------------------------------------------------------------------------------------------


def test_no_hits_count_as_zero_and_no_relevant_is_left_out_of_recall() -> None:
    # Query 2 has class 7, absent from the database: AP 0, excluded from the recall mean.
    query_labels = np.array([0, 1, 7])
    query_codes = np.vstack([HAND_QUERY_CODES, HAND_QUERY_CODES[:1]])
    case = (query_codes, HAND_DATABASE_CODES, query_labels, HAND_DATABASE_LABELS)
    np.testing.assert_allclose(average_precision_at_k(*case, topk=3), [7 / 12, 1 / 2, 0.0])
    assert mean_average_precision(*case, topk=3) == pytest.approx((7 / 12 + 1 / 2) / 3)
    pr = precision_recall_at_k(*case, ks=(2,))
    assert pr["recall"][0] == pytest.approx(5 / 12)  # the two other queries only
    assert pr["precision"][0] == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)  # all three queries
    nobody = precision_recall_at_k(
        HAND_QUERY_CODES, HAND_DATABASE_CODES, np.array([8, 9]), HAND_DATABASE_LABELS
    )
    assert np.isnan(nobody["recall"]).all() and int(nobody["n_queries_with_relevant"]) == 0
    assert (
        mean_average_precision(HAND_QUERY_CODES, HAND_DATABASE_CODES, np.array([8, 9]), HAND_DATABASE_LABELS)
        == 0
    )


def test_result_independent_of_chunk_size(monkeypatch: pytest.MonkeyPatch) -> None:
    case = _random_case(5, n_query=25, n_database=60, q=8, multi_label=True)
    chunk_counts = []
    original = metrics._iter_top_k

    def counting_iter_top_k(*args, **kwargs):
        chunks = list(original(*args, **kwargs))
        chunk_counts.append(len(chunks))
        yield from chunks

    monkeypatch.setattr(metrics, "_iter_top_k", counting_iter_top_k)
    reference = average_precision_at_k(*case, topk=10, memory_mb=512)
    reference_report = retrieval_report(*case, topk=10, ks=(5, 30))
    reference_curve = pr_curve(*case)
    for memory_mb in (1e-6, 0.005):  # one query a chunk; several queries a chunk, last chunk partial
        np.testing.assert_array_equal(average_precision_at_k(*case, topk=10, memory_mb=memory_mb), reference)
        report = retrieval_report(*case, topk=10, ks=(5, 30), memory_mb=memory_mb)
        assert report == pytest.approx(reference_report, rel=1e-12)
        curve = pr_curve(*case, memory_mb=memory_mb)
        for key in ("precision", "recall"):
            np.testing.assert_allclose(curve[key], reference_curve[key], rtol=1e-12)
    assert chunk_counts[0] == 1 and chunk_counts[2] == 25 and 1 < chunk_counts[4] < 25


def test_int64_keys_give_the_same_ranking(monkeypatch: pytest.MonkeyPatch) -> None:
    # int32 keys hold distance * n_database + index only while that fits; the int64 path must agree.
    assert metrics._key_dtype(64, 45_508) is np.int32
    assert metrics._key_dtype(64, 40_000_000) is np.int64
    case = _random_case(6, n_query=20, n_database=60, q=12, multi_label=False)
    reference = average_precision_at_k(*case, topk=15)
    monkeypatch.setattr(metrics, "_key_dtype", lambda max_distance, n_database: np.int64)
    np.testing.assert_array_equal(average_precision_at_k(*case, topk=15), reference)


def test_packed_torch_and_pm1_inputs_agree() -> None:
    case = _random_case(7, n_query=20, n_database=50, q=13, multi_label=False)
    query_codes, database_codes, query_labels, database_labels = case
    reference = retrieval_report(*case, topk=20, ks=(5, 10))
    packed = (pack_codes(query_codes), pack_codes(database_codes), query_labels, database_labels)
    assert retrieval_report(*packed, topk=20, ks=(5, 10)) == reference
    as_torch = tuple(torch.as_tensor(array) for array in case)
    assert retrieval_report(*as_torch, topk=20, ks=(5, 10)) == reference
    mixed = (query_codes.astype(np.float32), pack_codes(database_codes), query_labels, database_labels)
    assert retrieval_report(*mixed, topk=20, ks=(5, 10)) == reference
    # Packed codes alone do not tell q = 13: the curve then runs to 16, or to n_bits when given.
    np.testing.assert_allclose(pr_curve(*packed, n_bits=13)["precision"], pr_curve(*case)["precision"])
    assert len(pr_curve(*packed)["radius"]) == 17


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"query_codes": np.zeros((2, 8))}, "-1 and \\+1"),
        ({"query_codes": np.ones((2, 16))}, "bits"),
        ({"query_codes": np.ones(8)}, "2-D"),
        ({"query_labels": np.array([0, 1, 2])}, "query labels"),
        ({"query_labels": np.array([0.0, 1.0])}, "integer"),
        ({"database_labels": np.full((5, 3), 2)}, "0/1"),
        ({"query_labels": np.array([0, 5]), "database_labels": np.eye(5, 3, dtype=bool)}, "outside"),
        ({"topk": 0}, "topk"),
        ({"normalize": "mean"}, "normalize"),
        ({"memory_mb": 0}, "memory_mb"),
    ],
)
def test_bad_input_raises_one_line_errors(kwargs, match) -> None:
    arguments = {
        "query_codes": HAND_QUERY_CODES.repeat(2, axis=1),
        "database_codes": HAND_DATABASE_CODES.repeat(2, axis=1),
        "query_labels": HAND_QUERY_LABELS,
        "database_labels": HAND_DATABASE_LABELS,
    }
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match) as error:
        mean_average_precision(**arguments)
    assert "\n" not in str(error.value)


def test_bad_cutoffs_and_bits() -> None:
    with pytest.raises(ValueError, match="ks"):
        precision_recall_at_k(*HAND, ks=())
    with pytest.raises(ValueError, match="ks"):
        retrieval_report(*HAND, ks=(5, 0))
    with pytest.raises(ValueError, match="n_bits"):
        pr_curve(*HAND, n_bits=3)
    with pytest.raises(ValueError, match="at least one"):
        mean_average_precision(
            np.ones((0, 4)), HAND_DATABASE_CODES, np.array([], dtype=int), HAND_DATABASE_LABELS
        )


# ---------------------------------------------------------------------------------------------------------
# Leave-one-out mAP (the ENAS reward: one validation batch against itself)
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_leave_one_out_map_is_average_precision_against_the_others(seed):
    rng = np.random.default_rng(seed)
    n, q = int(rng.integers(2, 24)), int(rng.choice([3, 8, 16, 64]))
    codes = rng.choice([-1.0, 1.0], size=(n, q))
    codes[rng.integers(0, n, size=n // 3)] = codes[0]  # repeated codes: ties broken by index
    if seed % 2:
        labels = rng.random((n, 5)) < 0.3  # multi-hot, some videos share nothing with anyone
    else:
        labels = rng.integers(0, 4, size=n)
    topk = None if seed % 3 else int(rng.integers(1, n + 2))
    normalize = "k" if seed % 4 == 3 else "hits"
    expected = []
    for i in range(n):
        others = np.arange(n) != i
        expected.append(average_precision_at_k(codes[i : i + 1], codes[others], labels[i : i + 1], labels[others],
                                               topk=topk or n, normalize=normalize)[0])
    assert leave_one_out_map(codes, labels, topk=topk, normalize=normalize) == pytest.approx(np.mean(expected),
                                                                                             abs=1e-12)
    assert leave_one_out_map(pack_codes(codes), labels, topk=topk, normalize=normalize) == pytest.approx(
        np.mean(expected), abs=1e-12)


def test_leave_one_out_map_hand_worked():
    # Item 0's others ranked: item 1 (distance 0, irrelevant), item 2 (distance 2, relevant): AP 1/2.
    # Item 1: item 0 (0, irrelevant), item 2 (2, irrelevant): AP 0. Item 2: item 0 (2, relevant) before
    # item 1 (2, irrelevant) by index: AP 1.
    codes = np.array([[1, 1], [1, 1], [-1, -1]])
    assert leave_one_out_map(codes, np.array([0, 1, 0])) == pytest.approx((0.5 + 0 + 1) / 3)
    with pytest.raises(ValueError, match="at least 2 items"):
        leave_one_out_map(codes[:1], np.array([0]))
