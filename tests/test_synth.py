"""The embedded synthetic dataset: determinism, layout, and the properties that make the task meaningful.

The probes are cheap and closed-form: a ridge-regression classifier (a linear probe) on mean-pooled
features and nearest-centroid within the classes that share one modality's evidence. Accuracy counts a
prediction correct when it is one of the video's labels.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from avnas_nni.data import load_dataset, make_synthetic, write_synthetic

SMALL = {"num_class": 8, "n_train": 40, "n_val": 12, "n_test": 12, "m": 16, "d": 12}


@pytest.fixture(scope="module")
def default_set():
    return make_synthetic()


def _first_labels(split) -> np.ndarray:
    return np.array([labels[0] for labels in split.labels])


def _features(split, modalities: tuple[str, ...]) -> np.ndarray:
    return np.concatenate([getattr(split, name).mean(axis=1) for name in modalities], axis=1)


def _ridge_predict(train_x, train_y, test_x, classes, lam: float = 10.0) -> np.ndarray:
    mean, std = train_x.mean(axis=0), train_x.std(axis=0) + 1e-6
    a = np.c_[(train_x - mean) / std, np.ones(len(train_x))]
    b = np.c_[(test_x - mean) / std, np.ones(len(test_x))]
    targets = (train_y[:, None] == classes[None, :]).astype(np.float64)
    weights = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ targets)
    return classes[(b @ weights).argmax(axis=1)]


def _probe_accuracy(data, modalities: tuple[str, ...]) -> float:
    train, test = data.splits["train"], data.splits["test"]
    predicted = _ridge_predict(
        _features(train, modalities),
        _first_labels(train),
        _features(test, modalities),
        np.arange(data.num_class),
    )
    hits = test.multi_hot(data.num_class)[np.arange(len(predicted)), predicted]
    return float(hits.mean())


def _within_group_accuracy(data, groups: list[list[int]], modalities: tuple[str, ...]) -> float:
    """Nearest-centroid accuracy among the classes of each group, on single-label videos (mean pooling)."""
    train, test = data.splits["train"], data.splits["test"]
    scores = []
    for group in groups:
        classes = np.array(group)
        sides = []
        for split in (train, test):
            labels = _first_labels(split)
            keep = np.isin(labels, classes) & (split.multi_hot(data.num_class).sum(axis=1) == 1)
            sides.append((_features(split, modalities)[keep], labels[keep]))
        (train_x, train_y), (test_x, test_y) = sides
        mean, std = train_x.mean(axis=0), train_x.std(axis=0) + 1e-6
        centroids = np.stack([((train_x[train_y == c] - mean) / std).mean(axis=0) for c in classes])
        distance = (((test_x - mean) / std)[:, None, :] - centroids[None]) ** 2
        scores.append(np.mean(classes[distance.sum(axis=-1).argmin(axis=1)] == test_y))
    return float(np.mean(scores))


def test_write_is_deterministic_and_seed_dependent(tmp_path: Path) -> None:
    first = write_synthetic(tmp_path / "a", seed=5, **SMALL).parent
    second = write_synthetic(tmp_path / "b", seed=5, **SMALL).parent
    other = write_synthetic(tmp_path / "c", seed=6, **SMALL).parent
    names = sorted(p.name for p in first.iterdir())
    assert names == ["audio.h5", "config.json", "test.txt", "train.txt", "val.txt", "visual.h5"]
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert (first / "visual.h5").read_bytes() != (other / "visual.h5").read_bytes()


def test_written_set_loads_and_matches_memory(tmp_path: Path) -> None:
    config = write_synthetic(tmp_path, seed=9, **SMALL)
    data = make_synthetic(seed=9, **SMALL)
    ds = load_dataset(config)
    assert (ds.num_class, ds.m, ds.d) == (8, 16, 12)
    assert ds.ids("retrieval") == ds.ids("train") == data.splits["train"].ids
    visual, audio = ds.features("test")
    np.testing.assert_array_equal(visual, data.splits["test"].visual)
    np.testing.assert_array_equal(audio, data.splits["test"].audio)
    np.testing.assert_array_equal(ds.labels("val"), data.splits["val"].multi_hot(8))


def test_shapes_ids_and_labels(default_set) -> None:
    sizes = {"train": 1500, "val": 300, "test": 300}
    all_ids = []
    for name, split in default_set.splits.items():
        assert split.visual.shape == split.audio.shape == (sizes[name], 25, 48)
        assert split.visual.dtype == split.audio.dtype == np.float32
        assert np.isfinite(split.visual).all() and np.isfinite(split.audio).all()
        multi_hot = split.multi_hot(24)
        assert multi_hot.any(axis=1).all() and multi_hot.sum(axis=1).max() <= 2
        assert multi_hot.any(axis=0).all()  # every class present in every split
        all_ids += split.ids
    assert len(set(all_ids)) == len(all_ids)


def test_multi_label_fraction(default_set) -> None:
    train = default_set.splits["train"].multi_hot(24)
    fraction = float((train.sum(axis=1) == 2).mean())
    assert 0.07 <= fraction <= 0.13


def test_generation_is_fast(tmp_path: Path) -> None:
    start = time.perf_counter()
    write_synthetic(tmp_path)
    assert time.perf_counter() - start < 10.0


def test_modalities_rank_audio_visual_over_visual_over_audio(default_set) -> None:
    audio_visual = _probe_accuracy(default_set, ("visual", "audio"))
    visual = _probe_accuracy(default_set, ("visual",))
    audio = _probe_accuracy(default_set, ("audio",))
    assert audio_visual >= visual + 0.15, (audio_visual, visual)
    assert visual >= audio + 0.1, (visual, audio)
    assert audio >= 0.15  # informative: chance is 1/24
    assert audio_visual <= 0.97  # not saturated


def test_class_design_visual_twins_and_audio_groups(default_set) -> None:
    structure = default_set.structure
    twins, groups = structure.groups("visual"), structure.groups("audio")
    assert [len(g) for g in twins] == [2] * 12 and [len(g) for g in groups] == [4] * 6
    for twin in twins:  # a visual twin pair never shares its sound: audio tells them apart
        assert len({tuple(structure.audio_motif[c]) for c in twin}) == 2
    for group in groups:  # an audio group's members all look different
        assert len({tuple(structure.visual_events[c]) for c in group}) == 4


def test_each_modality_resolves_what_the_other_confuses(default_set) -> None:
    twins, groups = default_set.structure.groups("visual"), default_set.structure.groups("audio")
    assert _within_group_accuracy(default_set, twins, ("visual",)) <= 0.65  # chance 0.5
    assert _within_group_accuracy(default_set, twins, ("audio",)) >= 0.85
    assert _within_group_accuracy(default_set, groups, ("audio",)) <= 0.4  # chance 0.25
    assert _within_group_accuracy(default_set, groups, ("visual",)) >= 0.75  # chance 0.25


def test_small_class_counts_are_supported() -> None:
    data = make_synthetic(num_class=2, n_train=6, n_val=2, n_test=2, m=12, d=8, seed=1)
    assert data.structure.groups("visual") == [[0, 1]] and data.structure.groups("audio") == [[0], [1]]
    np.testing.assert_array_equal(data.structure.visual_events[0], data.structure.visual_events[1])
    assert set(data.structure.audio_motif[0]) != set(data.structure.audio_motif[1])
    with pytest.raises(ValueError, match="num_class"):
        make_synthetic(num_class=1)
