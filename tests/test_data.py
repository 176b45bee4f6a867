"""The feature layout reader/validator (avnas_nni.data.layout) and triplet sampling (avnas_nni.data.triplets)."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from avnas_nni.data import (
    SYNTH_VERSION,
    FeatureSet,
    TripletDataset,
    TripletSampler,
    check_dataset,
    load_dataset,
    read_split_list,
)
from avnas_nni.errors import AVNASError, DataError

M, D, NUM_CLASS = 5, 4, 3


def _features(ids: list[str], offset: float) -> dict[str, np.ndarray]:
    """Distinct, recognisable (M, D) arrays per id."""
    return {vid: (np.arange(M * D, dtype=np.float32).reshape(M, D) + 100 * i + offset) for i, vid in enumerate(ids)}


def _write_h5(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with h5py.File(path, "w") as f:
        for vid, array in arrays.items():
            f.create_group(vid).create_dataset("vectors", data=array)


class Layout:
    """A small valid dataset on disk (ActivityNet form, one multi-label video) and handles to break it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ids = {"train": ["a1", "a2", "a3", "a4"], "val": ["b1", "b2"], "test": ["c1", "c2"]}
        every = [vid for ids in self.ids.values() for vid in ids]
        self.visual = _features(every, 0.0)
        self.audio = _features(every, 0.5)
        _write_h5(root / "visual.h5", self.visual)
        _write_h5(root / "audio.h5", self.audio)
        (root / "train.txt").write_text("a1,100,0\na2,250,1,2\n\na3,80,2\na4,90,0\n")
        (root / "val.txt").write_text("b1,10,0\nb2,10,1\n")
        (root / "test.txt").write_text("c1,10,2\nc2,10,0,1\n")
        self.config = {
            "Image": "visual.h5",
            "Audio": "audio.h5",
            "num_class": NUM_CLASS,
            "train_list": "train.txt",
            "val_list": "val.txt",
            "test_list": "test.txt",
            "retrieval_list": "train.txt",
        }
        self.write_config()

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    def write_config(self) -> None:
        self.config_path.write_text(json.dumps(self.config))

    def edit_h5(self, name: str, edit: Callable[[h5py.File], None]) -> None:
        with h5py.File(self.root / name, "a") as f:
            edit(f)

    def replace_vectors(self, name: str, vid: str, data: np.ndarray) -> None:
        def edit(f: h5py.File) -> None:
            del f[vid]["vectors"]
            f[vid].create_dataset("vectors", data=data)

        self.edit_h5(name, edit)


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path)


# ------------------------------------------------------------------------------------------ round trips
def test_activitynet_round_trip_keeps_multi_labels_and_features(layout: Layout) -> None:
    ds = load_dataset(layout.config_path)
    assert (ds.m, ds.d, ds.num_class) == (M, D, NUM_CLASS)
    assert ds.ids("train") == ["a1", "a2", "a3", "a4"]  # blank line skipped
    assert ds.splits["train"].list_format == "activitynet"
    expected = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 1], [1, 0, 0]], dtype=bool)
    np.testing.assert_array_equal(ds.labels("train"), expected)
    np.testing.assert_array_equal(ds.labels("test"), [[0, 0, 1], [1, 1, 0]])
    visual, audio = ds.features("val")
    assert visual.dtype == np.float32 and visual.shape == (2, M, D)
    np.testing.assert_array_equal(visual[1], layout.visual["b2"])
    np.testing.assert_array_equal(audio[0], layout.audio["b1"])
    # Reading by id keeps the requested order, across splits.
    visual, audio = ds.read(["c2", "a1"])
    np.testing.assert_array_equal(visual[0], layout.visual["c2"])
    np.testing.assert_array_equal(audio[1], layout.audio["a1"])


def test_fcvid_round_trip_is_one_based(layout: Layout) -> None:
    (layout.root / "train.txt").write_text("a1,1\na2,3\na3,2\n")
    ds = load_dataset(layout.config_path)
    assert ds.splits["train"].list_format == "fcvid"
    assert ds.splits["val"].list_format == "activitynet"  # decided per file
    np.testing.assert_array_equal(ds.labels("train"), [[1, 0, 0], [0, 0, 1], [0, 1, 0]])


def test_list_format_key_forces_the_form(layout: Layout) -> None:
    layout.config["list_format"] = "fcvid"
    layout.write_config()
    with pytest.raises(DataError, match=r"train\.txt:1: expected 'name,label' \(FCVID form"):
        load_dataset(layout.config_path)


def test_float64_vectors_are_read_as_float32(layout: Layout) -> None:
    layout.replace_vectors("audio.h5", "a3", layout.audio["a3"].astype(np.float64))
    _, audio = load_dataset(layout.config_path).features("train")
    assert audio.dtype == np.float32
    np.testing.assert_array_equal(audio[2], layout.audio["a3"])


def test_relative_paths_resolve_against_the_config_directory(
    layout: Layout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = tmp_path / "configs" / "nested"
    conf_dir.mkdir(parents=True)
    config = dict(layout.config)
    config.update({k: f"../../{v}" for k, v in config.items() if isinstance(v, str)})
    config["Audio"] = str(tmp_path / "audio.h5")  # absolute paths stay as they are
    (conf_dir / "c.json").write_text(json.dumps(config))
    monkeypatch.chdir(tmp_path / "configs")  # the working directory must not matter
    ds = load_dataset(Path("nested") / "c.json")
    assert ds.config.visual_path.resolve() == (tmp_path / "visual.h5").resolve()
    assert ds.config.lists["test"].resolve() == (tmp_path / "test.txt").resolve()
    assert ds.ids("test") == ["c1", "c2"]


def test_check_dataset_summary(layout: Layout) -> None:
    summary = check_dataset(layout.config_path)
    assert (summary["num_class"], summary["m"], summary["d"], summary["videos"]) == (NUM_CLASS, M, D, 8)
    train = summary["splits"]["train"]
    assert (train["videos"], train["classes_present"], train["multi_label"], train["max_labels"]) == (4, 3, 1, 2)
    assert summary["splits"]["val"]["classes_present"] == 2
    assert summary["splits"]["test"]["multi_label"] == 1
    assert summary["overlaps"] == {"val&test": 0, "val&retrieval": 0, "test&retrieval": 0, "train&test": 0}
    assert summary["file_sizes"]["Image"] == (layout.root / "visual.h5").stat().st_size
    assert summary["file_sizes"]["val_list"] == (layout.root / "val.txt").stat().st_size
    json.dumps(summary)  # JSON-ready


def test_embedded_is_generated_once_into_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVNAS_CACHE", str(tmp_path / "cache"))
    ds = load_dataset("embedded")
    target = tmp_path / "cache" / f"embedded-{SYNTH_VERSION}"
    assert ds.config_path == target / "config.json"
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [target.name]  # no temp dir left
    assert (ds.num_class, ds.m, ds.d) == (24, 25, 48)
    assert [len(ds.ids(s)) for s in ("train", "val", "test", "retrieval")] == [1500, 300, 300, 1500]
    stamp = (target / "visual.h5").stat().st_mtime_ns
    again = load_dataset("embedded", validate=False)
    assert (target / "visual.h5").stat().st_mtime_ns == stamp  # reused, not rewritten
    assert again.ids("val") == ds.ids("val")


def test_validate_false_defers_content_errors_to_reading(layout: Layout) -> None:
    bad = layout.visual["b1"].copy()
    bad[2, 1] = np.nan
    layout.replace_vectors("visual.h5", "b1", bad)
    ds = load_dataset(layout.config_path, validate=False)
    ds.features("train")  # the other videos still read
    with pytest.raises(DataError, match=r"visual\.h5: video 'b1' has non-finite values"):
        ds.features("val")


# ------------------------------------------------------------------------------------------ bad inputs
def _missing_config(lay: Layout) -> Path:
    lay.config_path.unlink()
    return lay.config_path


def _not_json(lay: Layout) -> None:
    lay.config_path.write_text('{"Image": "visual.h5",')


def _key_missing(lay: Layout) -> None:
    del lay.config["test_list"]
    lay.write_config()


def _wrong_type(lay: Layout) -> None:
    lay.config["num_class"] = "3"
    lay.write_config()


def _missing_h5(lay: Layout) -> None:
    (lay.root / "audio.h5").unlink()


def _missing_list(lay: Layout) -> None:
    (lay.root / "val.txt").unlink()


def _id_absent(lay: Layout) -> None:
    lay.edit_h5("audio.h5", lambda f: f.__delitem__("c2"))


def _no_vectors(lay: Layout) -> None:
    def edit(f: h5py.File) -> None:
        f["a2"].move("vectors", "features")

    lay.edit_h5("visual.h5", edit)


def _not_2d(lay: Layout) -> None:
    lay.replace_vectors("visual.h5", "a3", np.zeros((M, D, 2), np.float32))


def _shape_between_videos(lay: Layout) -> None:
    lay.replace_vectors("visual.h5", "b2", np.zeros((M + 1, D), np.float32))
    lay.replace_vectors("audio.h5", "b2", np.zeros((M + 1, D), np.float32))


def _shape_between_modalities(lay: Layout) -> None:
    for vid in lay.audio:
        lay.replace_vectors("audio.h5", vid, np.zeros((M, D + 1), np.float32))


def _int_dtype(lay: Layout) -> None:
    lay.replace_vectors("audio.h5", "a4", np.zeros((M, D), np.int32))


def _nan(lay: Layout) -> None:
    bad = lay.audio["c1"].copy()
    bad[-1, -1] = np.nan
    lay.replace_vectors("audio.h5", "c1", bad)


def _inf(lay: Layout) -> None:
    bad = lay.visual["a1"].copy()
    bad[0, 0] = np.inf
    lay.replace_vectors("visual.h5", "a1", bad)


def _label_range_activitynet(lay: Layout) -> None:
    (lay.root / "val.txt").write_text("b1,10,0\nb2,10,3\n")


def _label_range_fcvid(lay: Layout) -> None:
    (lay.root / "test.txt").write_text("c1,1\nc2,0\n")


def _empty_split(lay: Layout) -> None:
    (lay.root / "test.txt").write_text("\n  \n")


def _unparsable(lay: Layout) -> None:
    (lay.root / "train.txt").write_text("a1,100,0\na2,many,1\n")


def _not_hdf5(lay: Layout) -> None:
    (lay.root / "visual.h5").write_bytes(b"this is not an HDF5 file\n" * 40)


def _truncated_hdf5(lay: Layout) -> None:
    path = lay.root / "audio.h5"
    path.write_bytes(path.read_bytes()[:1000])


def _duplicate(lay: Layout) -> None:
    (lay.root / "val.txt").write_text("b1,10,0\nb2,10,1\nb1,10,0\n")


BAD_INPUTS = [
    (_missing_config, ["config.json", "not found"]),
    (_not_json, ["config.json", "not valid JSON", "line 1"]),
    (_key_missing, ["config.json", "'test_list'", "missing"]),
    (_wrong_type, ["config.json", "'num_class'", "positive integer", "'3'"]),
    (_missing_h5, ["audio.h5", "not found", "'Audio'"]),
    (_missing_list, ["val.txt", "not found", "'val_list'"]),
    (_id_absent, ["audio.h5", "'c2'", "test.txt", "missing"]),
    (_no_vectors, ["visual.h5", "'a2'", "no dataset 'vectors'"]),
    (_not_2d, ["visual.h5", "'a3'", "(5, 4, 2)", "2-D"]),
    (_shape_between_videos, ["visual.h5", "'b2'", "(6, 4)", "expected (5, 4)"]),
    (_shape_between_modalities, ["audio.h5", "'a1'", "(5, 5)", "expected (5, 4)", "visual.h5"]),
    (_int_dtype, ["audio.h5", "'a4'", "int32", "float"]),
    (_nan, ["audio.h5", "'c1'", "non-finite"]),
    (_inf, ["visual.h5", "'a1'", "non-finite"]),
    (_label_range_activitynet, ["val.txt:2", "label 3", "0..2"]),
    (_label_range_fcvid, ["test.txt:2", "label 0", "1..3"]),
    (_empty_split, ["test.txt", "empty"]),
    (_unparsable, ["train.txt:2", "a2,many,1", "ActivityNet"]),
    (_not_hdf5, ["visual.h5", "not a readable HDF5 file"]),
    (_truncated_hdf5, ["audio.h5", "HDF5"]),
    (_duplicate, ["val.txt:3", "'b1'", "twice", "line 1"]),
]


@pytest.mark.parametrize(("breaker", "expected"), BAD_INPUTS, ids=[b.__name__.strip("_") for b, _ in BAD_INPUTS])
def test_bad_input_is_one_line_data_error(layout: Layout, breaker, expected: list[str]) -> None:
    breaker(layout)
    with pytest.raises(DataError) as info:
        load_dataset(layout.config_path)
    message = str(info.value)
    assert isinstance(info.value, AVNASError) and isinstance(info.value, ValueError)
    assert "\n" not in message
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def test_read_split_list_rejects_a_form_it_cannot_tell(tmp_path: Path) -> None:
    path = tmp_path / "odd.txt"
    path.write_text("justaname\n")
    with pytest.raises(DataError, match=r"odd\.txt:1: cannot tell the list form"):
        read_split_list(path, NUM_CLASS)


# -------------------------------------------------------------------------------------------- triplets
def _random_labels(n: int, num_class: int, multi_fraction: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = np.zeros((n, num_class), dtype=bool)
    labels[np.arange(n), rng.integers(0, num_class - 1, n)] = True  # the last class stays a singleton
    for row in np.flatnonzero(rng.random(n) < multi_fraction):
        labels[row, rng.integers(0, num_class - 1)] = True
    labels[0] = False
    labels[0, num_class - 1] = True  # a class with a single video: its own positive
    return labels


def test_triplet_invariants_with_multi_labels() -> None:
    labels = _random_labels(400, 12, 0.3, seed=1)
    sampler = TripletSampler(labels, n_neg=4, seed=7)
    triplets = sampler.epoch_triplets(0)
    assert triplets.shape == (400, 6) and triplets.dtype == np.int64
    np.testing.assert_array_equal(triplets[:, 0], np.arange(400))
    anchors, positives, negatives = triplets[:, 0], triplets[:, 1], triplets[:, 2:]
    np.testing.assert_array_equal(sampler.self_positive_anchors, [0])
    assert positives[0] == 0
    assert (positives[1:] != anchors[1:]).all()
    assert (labels[anchors] & labels[positives]).any(axis=1).all()  # positive shares a label
    shared = labels[anchors][:, None, :] & labels[negatives]
    assert not shared.any()  # negatives share none
    assert (labels.sum(axis=1) > 1).sum() > 50  # the check above did meet multi-label videos


def test_negative_classes_are_distinct_and_all_used() -> None:
    labels = np.eye(8, dtype=bool)[np.arange(160) % 8]  # single label: a video's class is its only label
    sampler = TripletSampler(labels, n_neg=4, seed=3)
    classes = labels.argmax(axis=1)
    seen = set()
    for epoch in range(3):
        negative_classes = classes[sampler.epoch_triplets(epoch)[:, 2:]]
        assert all(len(set(row)) == 4 for row in negative_classes.tolist())
        assert (negative_classes != classes[:, None]).all()
        seen |= set(negative_classes.ravel().tolist())
    assert seen == set(range(8))


def test_triplets_deterministic_per_seed_and_epoch() -> None:
    labels = _random_labels(200, 10, 0.1, seed=2)
    first = TripletSampler(labels, n_neg=4, seed=11)
    second = TripletSampler(labels, n_neg=4, seed=11)
    np.testing.assert_array_equal(first.epoch_triplets(5), second.epoch_triplets(5))
    assert not np.array_equal(first.epoch_triplets(5), first.epoch_triplets(6))
    assert not np.array_equal(first.epoch_triplets(5), TripletSampler(labels, n_neg=4, seed=12).epoch_triplets(5))


def test_sampler_refuses_too_few_negative_classes() -> None:
    labels = np.eye(4, dtype=bool)[np.arange(20) % 4]
    with pytest.raises(ValueError, match="fewer than n_neg=4"):
        TripletSampler(labels, n_neg=4)
    with pytest.raises(ValueError, match="no label"):
        TripletSampler(np.zeros((3, 5), dtype=bool))


def test_triplet_dataset_items_follow_the_epoch() -> None:
    rng = np.random.default_rng(0)
    visual = rng.standard_normal((60, M, D)).astype(np.float32)
    audio = rng.standard_normal((60, M, D)).astype(np.float32)
    labels = np.eye(6, dtype=bool)[np.arange(60) % 6]
    dataset = TripletDataset(visual, audio, labels, n_neg=4, seed=5)
    assert len(dataset) == 60
    item_visual, item_audio = dataset[7]
    assert item_visual.shape == (6, M, D) and item_audio.dtype == torch.float32
    rows = TripletSampler(labels, n_neg=4, seed=5).epoch_triplets(0)[7]
    np.testing.assert_array_equal(item_visual.numpy(), visual[rows])
    np.testing.assert_array_equal(item_audio.numpy(), audio[rows])
    clone = pickle.loads(pickle.dumps(dataset))
    assert torch.equal(clone[7][0], item_visual)
    dataset.set_epoch(1)
    moved = TripletSampler(labels, n_neg=4, seed=5).epoch_triplets(1)
    assert torch.equal(dataset.triplets, torch.from_numpy(moved))
    assert not np.array_equal(moved, TripletSampler(labels, n_neg=4, seed=5).epoch_triplets(0))


def test_feature_set_shares_memory_and_checks_lengths() -> None:
    visual = np.ones((3, M, D), np.float32)
    dataset = FeatureSet(visual, np.zeros((3, M, D), np.float32))
    visual[1] = 2.0
    assert len(dataset) == 3 and float(dataset[1][0][0, 0]) == 2.0
    with pytest.raises(ValueError, match="different numbers of videos"):
        FeatureSet(visual, np.zeros((2, M, D), np.float32))


def test_authors_config_key_dataset_sets_the_form_and_placeholders_are_named(layout: Layout) -> None:
    layout.config["dataset"] = "fcvid"
    layout.write_config()
    with pytest.raises(DataError, match=r"train\.txt:1: expected 'name,label' \(FCVID form"):
        load_dataset(layout.config_path)
    layout.config["dataset"] = "actnet"
    layout.config["Image"] = "{local_dir}/act_vit.h5"
    layout.write_config()
    with pytest.raises(DataError, match=r"act_vit\.h5: visual HDF5 file not found .*'\{\.\.\.\}' placeholder"):
        load_dataset(layout.config_path)
