"""Codes files, faiss Hamming indexes and ``avnas encode / index build / query``, down to a video file query."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from avnas_nni import cli
from avnas_nni.codes import hamming_distance, pack_codes, sign_codes
from avnas_nni.evaluator import encode, load_split
from avnas_nni.index import CodeSet, HashIndex, IndexFileError, read_codes, write_codes
from avnas_nni.pipeline import RunSettings, load_run_model, run_train

from video_fixtures import save_tiny_models, write_clip


def _run_cli(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(argv)
    return code, out.getvalue()


def _random_codes(n: int, bits: int, seed: int = 0) -> CodeSet:
    rng = np.random.default_rng(seed)
    return CodeSet(rng.integers(0, 256, (n, bits // 8), dtype=np.uint8), [f"v{i}" for i in range(n)], bits,
                   labels=rng.random((n, 3)) < 0.4, attrs={"split": "all"})


def _check_against_oracle(distances, positions, queries, database, k):
    """faiss's answer = the brute-force numpy answer: same sorted distances, the same ids strictly inside the
    k-th distance, and each returned id really at its reported distance."""
    oracle = hamming_distance(queries, database)
    np.testing.assert_array_equal(distances, np.sort(oracle, axis=1, kind="stable")[:, :k])
    for row, (d, p) in enumerate(zip(distances, positions, strict=True)):
        np.testing.assert_array_equal(oracle[row, p], d)
        inside = set(np.flatnonzero(oracle[row] < d[-1]))
        assert inside <= set(p) and len(set(p)) == k
        ties = np.flatnonzero(d == d[-1])
        assert list(p[ties]) == sorted(p[ties])  # equal distances in database order


@pytest.mark.parametrize("bits", [8, 64])
def test_flat_search_equals_the_numpy_oracle(bits):
    codes = _random_codes(3000, bits)
    queries = _random_codes(40, bits, seed=1).codes
    distances, positions = HashIndex.build(codes).search(queries, k=25)
    _check_against_oracle(distances, positions, queries, codes.codes, 25)


def test_approximate_indexes_return_true_distances_and_find_near_codes():
    rng = np.random.default_rng(3)
    centres = rng.integers(0, 2, (20, 64))  # clustered codes: a few flipped bits around 20 centres
    bits = centres[rng.integers(0, 20, 4000)] ^ (rng.random((4000, 64)) < 0.03)
    codes = CodeSet(np.packbits(bits.astype(np.uint8), axis=1), [str(i) for i in range(4000)], 64)
    queries = codes.codes[:50]
    exact = HashIndex.build(codes).search(queries, 10)[0]
    for kind in ("hash", "multihash"):
        index = HashIndex.build(codes, kind, hash_bits=12, nflip=2)
        distances, positions = index.search(queries, 10)
        found = positions >= 0
        oracle = hamming_distance(queries, codes.codes)
        rows = np.nonzero(found)[0]
        np.testing.assert_array_equal(distances[found], oracle[rows, positions[found]])
        assert (distances[:, 0] == 0).all()  # each query finds itself
        assert (distances[found] >= 0).all() and (distances[~found] == -1).all()
        assert np.mean(distances[:, :5] == exact[:, :5]) > 0.5, kind


def test_codes_file_round_trip_and_errors(tmp_path):
    codes = _random_codes(50, 32)
    path = write_codes(tmp_path / "c.h5", codes)
    back = read_codes(path)
    np.testing.assert_array_equal(back.codes, codes.codes)
    np.testing.assert_array_equal(back.labels, codes.labels)
    assert back.ids == codes.ids and back.bits == 32 and back.attrs == {"split": "all"}
    assert [p.name for p in tmp_path.iterdir()] == ["c.h5"]  # no temporary file left behind
    assert path.stat().st_mode & 0o777 == 0o644  # readable by others, as any file written the plain way
    index_dir = HashIndex.build(codes).save(tmp_path / "idx")
    assert index_dir.stat().st_mode & 0o777 == 0o755 and (index_dir / "codes.h5").stat().st_mode & 0o777 == 0o644
    shutil.rmtree(index_dir)
    (tmp_path / "corrupt.h5").write_bytes(b"\x89HDF\r\n" + bytes(100))
    with pytest.raises(IndexFileError, match=r"corrupt\.h5: unreadable HDF5 file"):
        read_codes(tmp_path / "corrupt.h5")
    with h5py.File(tmp_path / "other.h5", "w") as h5:
        h5["x"] = 1
    with pytest.raises(IndexFileError, match=r"other\.h5: not an avnas codes file \(missing codes, ids"):
        read_codes(tmp_path / "other.h5")
    with pytest.raises(ValueError, match="'v1' appears twice"):
        CodeSet(codes.codes[:2], ["v1", "v1"], 32)
    with pytest.raises(ValueError, match="does not fit bits=64"):
        CodeSet(codes.codes, codes.ids, 64)
    with pytest.raises(ValueError, match="multiple of 8"):
        HashIndex.build(CodeSet(codes.codes, codes.ids, 30))


def test_index_save_load_and_corruption(tmp_path):
    codes = _random_codes(500, 64)
    for kind in ("flat", "multihash"):
        index = HashIndex.build(codes, kind)
        index.save(tmp_path / kind)
        loaded = HashIndex.load(tmp_path / kind)
        assert loaded.kind == kind and loaded.params == index.params and len(loaded) == 500
        for a, b in zip(loaded.search(codes.codes[:5], 7), index.search(codes.codes[:5], 7), strict=True):
            np.testing.assert_array_equal(a, b)
    HashIndex.build(_random_codes(20, 64)).save(tmp_path / "flat")  # replacing an existing index
    assert len(HashIndex.load(tmp_path / "flat")) == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flat", "multihash"]
    (tmp_path / "flat" / "index.faiss").write_bytes(b"garbage")
    with pytest.raises(IndexFileError, match=r"index\.faiss: modified after the index was built"):
        HashIndex.load(tmp_path / "flat")
    meta = json.loads((tmp_path / "flat" / "index.json").read_text())
    del meta["files"]  # an index built before the digests were stored: faiss itself finds the damage
    (tmp_path / "flat" / "index.json").write_text(json.dumps(meta))
    with pytest.raises(IndexFileError, match=r"index\.faiss: unreadable faiss index"):
        HashIndex.load(tmp_path / "flat")
    with pytest.raises(IndexFileError, match="no index.json"):
        HashIndex.load(tmp_path / "missing")


def test_search_ids_leaves_the_query_out():
    codes = _random_codes(300, 64)
    index = HashIndex.build(codes)
    distances, positions = index.search_ids(["v3", "v10"], k=5)
    assert positions.shape == (2, 5) and 3 not in positions[0] and 10 not in positions[1]
    oracle = hamming_distance(codes.codes[[3, 10]], codes.codes)
    oracle[0, 3] = oracle[1, 10] = 999
    np.testing.assert_array_equal(distances, np.sort(oracle, axis=1)[:, :5])
    with pytest.raises(IndexFileError, match="unknown video id"):
        index.search_ids(["nope"])
    everything = index.search_ids(["v3", "v10"], k=1000)[1]  # k beyond the database: every other video once
    assert everything.shape == (2, 299) and all(len(set(row)) == 299 for row in everything)


@pytest.fixture(scope="module")
def tiny_run(tiny_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "transformer"
    run_train(RunSettings(strategy="fixed", arch="transformer", data=tiny_data, bits=16, finetune_epochs=1,
                          batch_size=16, seed=2), out)
    return out


def test_encode_index_query_round_trip(tiny_run, tiny_data, tmp_path):
    code, text = _run_cli(["encode", str(tiny_run), "--out", str(tmp_path / "codes.h5"), "--batch-size", "7",
                           "--no-progress"])
    assert code == 0 and "videos/s" in text
    codes = read_codes(tmp_path / "codes.h5")
    # The same codes as the evaluator's own path, video by video.
    model, _, _ = load_run_model(tiny_run)
    visual, audio, labels = load_split(tiny_data, "test")
    expected = pack_codes(sign_codes(encode(model.eval(), visual, audio)))
    from avnas_nni.data import load_dataset

    test_ids = load_dataset(tiny_data).ids("test")
    where = codes.positions(test_ids)
    np.testing.assert_array_equal(codes.codes[where], expected)
    np.testing.assert_array_equal(codes.labels[where], labels)
    assert len(codes) == len(set(codes.ids)) == 96 and codes.attrs["split"] == "all"

    assert _run_cli(["index", "build", str(tmp_path / "codes.h5"), "--out", str(tmp_path / "idx")])[0] == 0
    code, text = _run_cli(["query", str(tmp_path / "idx"), "--id", test_ids[0], "-k", "4", "--json"])
    result = json.loads(text)[0]
    assert code == 0 and result["query"] == test_ids[0] and len(result["neighbours"]) == 4
    oracle = hamming_distance(codes.codes[where[:1]], codes.codes)[0]
    oracle[where[0]] = 999
    assert [hit["hamming"] for hit in result["neighbours"]] == sorted(oracle)[:4]
    for hit in result["neighbours"]:
        assert oracle[codes.positions([hit["id"]])[0]] == hit["hamming"]
    code, text = _run_cli(["query", str(tmp_path / "idx"), "--id", test_ids[0], "-k", "3"])
    assert code == 0 and text.count("\n") == 5 and "hamming" in text  # title, header, 3 rows


def test_cli_errors_are_one_line(tiny_run, tmp_path, capsys):
    assert cli.main(["encode", str(tiny_run), "--out", str(tmp_path / "c.h5"), "--split", "nope"]) == 2
    assert "--split: expected 'all'" in capsys.readouterr().err
    assert not (tmp_path / "c.h5").exists()
    assert cli.main(["index", "build", str(tmp_path / "missing.h5"), "--out", str(tmp_path / "i")]) == 2
    assert "no such codes file" in capsys.readouterr().err
    HashIndex.build(_random_codes(10, 64)).save(tmp_path / "idx")
    assert cli.main(["query", str(tmp_path / "idx"), "--video", "x.mp4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--video needs --run" in err


def test_from_video_files_to_a_query_result(tmp_path):
    """The README's path on real clips: extract → train → encode → index → query a video file."""
    models = save_tiny_models(tmp_path / "models")
    videos = tmp_path / "videos"
    for i in range(12):
        # Six classes: the paper's loss draws n_neg = 4 negatives from distinct other classes.
        write_clip(videos / f"class{i % 6}" / f"clip{i}.mp4", frames=26 + i, seed=i)
    data = tmp_path / "dataset"
    extract = ["extract", str(videos), "--out", str(data), "--clip", str(models["clip"]), "--ast",
               str(models["ast"]), "--no-progress"]
    assert _run_cli(extract)[0] == 0
    run = tmp_path / "run"
    assert _run_cli(["train", "--arch", "transformer", "--data", str(data / "config.json"), "--bits", "16",
                     "--finetune-epochs", "1", "--batch-size", "4", "--out", str(run), "--no-progress"])[0] == 0
    assert _run_cli(["encode", str(run), "--out", str(tmp_path / "codes.h5"), "--no-progress"])[0] == 0
    assert _run_cli(["index", "build", str(tmp_path / "codes.h5"), "--out", str(tmp_path / "idx")])[0] == 0
    query = videos / "class4" / "clip4.mp4"
    code, text = _run_cli(["query", str(tmp_path / "idx"), "--video", str(query), "--run", str(run), "--clip",
                           str(models["clip"]), "--ast", str(models["ast"]), "-k", "12", "--json"])
    assert code == 0
    hits = {hit["id"]: hit for hit in json.loads(text)[0]["neighbours"]}
    # The clip is in the index: its own features, hence its own code, come back at distance 0 (other clips may
    # tie with it at 16 bits), labelled with its folder's class name.
    assert len(hits) == 12 and hits["class4--clip4"]["hamming"] == 0
    assert hits["class4--clip4"]["labels"] == ["class4"]
