"""Extract the paper's features from video files into the layout :mod:`avnas_nni.data` reads.

``extract_features(videos, out, visual_model, audio_model)`` finds the videos, labels them, decodes m
frames and m audio segments of each (:mod:`~avnas_nni.extract.video`), embeds them with CLIP and AST
(:mod:`~avnas_nni.extract.backbones`) and writes, in ``out``::

    visual.h5  audio.h5        /<video id>/vectors float32 (m, d)
    train.txt val.txt test.txt "name,frame_count,label[,label...]" (ActivityNet form, 0-based labels)
    config.json                {"Image": "visual.h5", "Audio": "audio.h5", "num_class": K, "train_list": ...,
                                "retrieval_list": "train.txt", "list_format": "activitynet", "class_names": [...]}
    extract_report.json        extracted videos (with notes), skipped videos (with reasons), timing

Rules
-----
* **Inputs.** Files and/or directories; directories are searched recursively for the extensions in
  :data:`VIDEO_EXTENSIONS` (a file named directly is tried whatever its extension).
* **Video id.** The path relative to the root it was found under (a directory given, or the parent of a
  file given), without extension; ``/`` becomes ``--``, commas and whitespace become ``_``. Two files with
  the same id are an error naming both.
* **Labels.** From ``labels_csv`` when given: a header row with columns ``video,label[,split]``; ``label``
  may hold several class names separated by ``;``; ``video`` matches the id, the file name or the stem. A
  video missing from the CSV is skipped and reported. Without a CSV the label is the name of the folder
  holding the file. Class names are sorted; their positions are the 0-based labels.
* **Splits.** The CSV's ``split`` column (train, val or test) where present and non-empty; otherwise
  decided by a hash of (seed, id): val with probability ``val_fraction``, test with ``test_fraction``.
  With three or more videos, an empty train, val or test split takes one hashed video from the largest
  split. The retrieval database is the training set (``retrieval_list = train.txt``).
* **Robustness.** One bad video never stops the run: a file that cannot be opened, has no video stream or
  no decodable frame is skipped with the reason. A video without an audio track gets features of silence
  (as long as the video) by default, or is skipped with ``missing_audio="skip"``. A video shorter than m
  frames has frames repeated. A damaged tail (fewer frames decode than were counted) repeats the last
  decoded frame. Every such case is noted in the report.
* **Resuming.** A rerun into the same ``out`` skips every id complete in both HDF5 files (``vectors`` of
  shape (m, d), from a source file of the same size); a partial id is written again. ``config.json`` is
  removed before the first feature is written and, with the lists, written again last, each atomically
  (temporary file + ``os.replace``): a killed run never leaves a config pointing at half the data. The
  result is checked with :func:`avnas_nni.data.load_dataset` before the function returns.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from avnas_nni.errors import AVNASError, SettingsError, VideoError
from avnas_nni.extract.backbones import AstAudioEncoder, ClipVisualEncoder
from avnas_nni.extract.video import AUDIO_RATE, decode_video, silence_segments
from avnas_nni.runs import atomic_write_text

__all__ = [
    "MISSING_AUDIO",
    "VIDEO_EXTENSIONS",
    "ExtractReport",
    "VideoFeatures",
    "VideoSource",
    "assign_splits",
    "discover_videos",
    "extract_features",
    "featurize",
    "featurize_video",
    "read_labels_csv",
    "video_id",
]

logger = logging.getLogger(__name__)

#: Extensions searched for in input directories (lower case).
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mkv", ".webm", ".avi", ".mov", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts", ".ogv"}
)
#: What to do with a video without an audio track.
MISSING_AUDIO = ("silence", "skip")
SPLIT_NAMES = ("train", "val", "test")
REPORT_NAME = "extract_report.json"
CONFIG_NAME = "config.json"
VISUAL_NAME = "visual.h5"
AUDIO_NAME = "audio.h5"


# ------------------------------------------------------------------------------------------ one video
@dataclass
class VideoFeatures:
    """The features of one video.

    Attributes
    ----------
    visual, audio : np.ndarray
        (m, d) float32 each.
    frame_count : int
        Frames counted in the video.
    audio_source : str
        ``"track"`` or ``"silence"`` (no usable audio track).
    notes : list of str
        Frames repeated, silence used, a damaged tail, ...
    """

    visual: np.ndarray
    audio: np.ndarray
    frame_count: int
    audio_source: str
    notes: list[str] = field(default_factory=list)


def _check_encoders(visual_encoder: ClipVisualEncoder, audio_encoder: AstAudioEncoder) -> int:
    if visual_encoder.dim != audio_encoder.dim:
        raise AVNASError(
            f"the visual model gives {visual_encoder.dim}-d features but the audio model {audio_encoder.dim}-d: "
            f"the feature layout needs one d for both (CLIP ViT-L/14-336 and AST both give 768)"
        )
    if audio_encoder.sampling_rate != AUDIO_RATE:
        raise AVNASError(
            f"the audio model's feature extractor expects {audio_encoder.sampling_rate} Hz, "
            f"audio is decoded at {AUDIO_RATE} Hz"
        )
    return int(visual_encoder.dim)


def featurize(
    path: str | os.PathLike,
    visual_encoder: ClipVisualEncoder,
    audio_encoder: AstAudioEncoder,
    frames: int = 25,
    missing_audio: str = "silence",
) -> VideoFeatures:
    """Decode and embed one video, with notes.

    Parameters
    ----------
    path : path
        The video file.
    visual_encoder, audio_encoder
        Loaded encoders with the same ``dim``.
    frames : int
        m, frames and audio segments per video.
    missing_audio : {"silence", "skip"}
        Without an audio track: embed silence, or raise :class:`VideoError`.

    Returns
    -------
    VideoFeatures

    Raises
    ------
    VideoError
        The video is unusable (or has no audio and ``missing_audio="skip"``).
    """
    if missing_audio not in MISSING_AUDIO:
        raise SettingsError(f"missing_audio must be one of {', '.join(MISSING_AUDIO)}, got {missing_audio!r}")
    _check_encoders(visual_encoder, audio_encoder)
    decoded = decode_video(path, frames=frames, size=visual_encoder.image_size, audio=True)
    notes = list(decoded.notes)
    segments = decoded.audio
    source = "track"
    if segments is None:
        if missing_audio == "skip":
            raise VideoError(f"{decoded.path}: no usable audio track (missing audio: skip)")
        segments = silence_segments(frames, decoded.seconds, AUDIO_RATE)
        source = "silence"
        notes.append("no audio track: silence features")
    visual = visual_encoder.encode(decoded.frames)
    audio = audio_encoder.encode(segments)
    for name, array in (("visual", visual), ("audio", audio)):
        if not np.isfinite(array).all():
            raise VideoError(f"{decoded.path}: the {name} model gave non-finite features")
    return VideoFeatures(visual=visual, audio=audio, frame_count=decoded.frame_count, audio_source=source,
                         notes=notes)


def featurize_video(
    path: str | os.PathLike,
    visual_encoder: ClipVisualEncoder,
    audio_encoder: AstAudioEncoder,
    frames: int = 25,
    missing_audio: str = "silence",
) -> tuple[np.ndarray, np.ndarray]:
    """The (visual, audio) features of one video file, as ``extract_features`` writes them.

    Parameters
    ----------
    path : path
        The video file.
    visual_encoder : ClipVisualEncoder
    audio_encoder : AstAudioEncoder
    frames : int
        m (25 in the paper; must match the data the model was trained on).
    missing_audio : {"silence", "skip"}
        Without an audio track: silence features, or raise :class:`VideoError`.

    Returns
    -------
    visual, audio : np.ndarray
        (m, d) float32 each.

    Raises
    ------
    VideoError
        The video cannot be used.
    """
    features = featurize(path, visual_encoder, audio_encoder, frames=frames, missing_audio=missing_audio)
    return features.visual, features.audio


# -------------------------------------------------------------------------------------- video sources
@dataclass(frozen=True)
class VideoSource:
    """A video file found in the inputs.

    Attributes
    ----------
    id : str
        The video id (see :func:`video_id`).
    path : pathlib.Path
        The file.
    folder : str
        Name of the folder holding the file (its label without a CSV).
    """

    id: str
    path: Path
    folder: str


def video_id(relative: str | os.PathLike) -> str:
    """The id of a video from its path relative to its root.

    The extension is dropped, ``/`` becomes ``--``, commas and whitespace become ``_`` (ids must fit the
    comma-separated split lists and HDF5 group names).

    Examples
    --------
    >>> video_id("cats/my clip,1.mp4")
    'cats--my_clip_1'
    """
    text = Path(relative).with_suffix("").as_posix()
    return re.sub(r"[,\s]", "_", text.replace("/", "--"))


def discover_videos(inputs: Iterable[str | os.PathLike]) -> list[VideoSource]:
    """Find the videos named by files and directories (recursively), with their ids.

    Parameters
    ----------
    inputs : iterable of path
        Video files and/or directories.

    Returns
    -------
    list of VideoSource
        In input order; each directory's files sorted by path. A file reached twice counts once.

    Raises
    ------
    AVNASError
        An input does not exist, no video is found, or two files have the same id.
    """
    sources: list[VideoSource] = []
    by_id: dict[str, Path] = {}
    seen: set[Path] = set()
    searched: list[str] = []
    for given in inputs:
        root = Path(given).expanduser()
        if root.is_file():
            found = [(root.parent, root)]
        elif root.is_dir():
            searched.append(str(root))
            found = [
                (root, p) for p in sorted(root.rglob("*")) if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()
            ]
        else:
            raise AVNASError(f"{root}: no such video file or directory")
        for base, path in found:
            resolved = path.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            vid = video_id(path.relative_to(base))
            if not vid or vid in (".", ".."):
                raise AVNASError(f"{path}: cannot make a video id from this file name")
            if vid in by_id:
                raise AVNASError(
                    f"video id '{vid}' of {path} is also the id of {by_id[vid]}: rename one of them, or give "
                    f"their common parent directory so the ids keep the sub-folders"
                )
            by_id[vid] = path
            sources.append(VideoSource(id=vid, path=path, folder=path.resolve().parent.name))
    if not sources:
        where = ", ".join(searched) if searched else "the inputs"
        raise AVNASError(f"no video file found in {where} (extensions {', '.join(sorted(VIDEO_EXTENSIONS))})")
    return sources


# ---------------------------------------------------------------------------------------------- labels
@dataclass(frozen=True)
class _LabelRow:
    labels: tuple[str, ...]
    split: str | None
    line: int


def read_labels_csv(path: str | os.PathLike) -> dict[str, tuple[tuple[str, ...], str | None]]:
    """Read a labels CSV: header ``video,label[,split]``, several labels separated by ``;``.

    Parameters
    ----------
    path : path
        The CSV file.

    Returns
    -------
    dict
        ``video`` value to ``(labels, split or None)``.

    Raises
    ------
    AVNASError
        Missing file or column, a row without label, an unknown split, a video listed twice.
    """
    rows = _read_label_rows(Path(path).expanduser())
    return {key: (row.labels, row.split) for key, row in rows.items()}


def _read_label_rows(path: Path) -> dict[str, _LabelRow]:
    if not path.is_file():
        raise AVNASError(f"{path}: labels CSV not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AVNASError(f"{path}: labels CSV is not UTF-8 text ({exc.reason})") from exc
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if header is None:
        raise AVNASError(f"{path}: labels CSV is empty (expected a header 'video,label[,split]')")
    columns = [name.strip().lower() for name in header]
    if "video" not in columns or "label" not in columns:
        raise AVNASError(f"{path}:1: header must name the columns 'video' and 'label' (and optionally 'split'), "
                         f"got {','.join(header)!r}")
    col_video, col_label = columns.index("video"), columns.index("label")
    col_split = columns.index("split") if "split" in columns else None
    rows: dict[str, _LabelRow] = {}
    for line, record in enumerate(reader, start=2):
        if not any(cell.strip() for cell in record):
            continue
        cells = [cell.strip() for cell in record] + [""] * len(columns)
        name = cells[col_video]
        if not name:
            raise AVNASError(f"{path}:{line}: empty 'video' field")
        labels = tuple(dict.fromkeys(part.strip() for part in cells[col_label].split(";") if part.strip()))
        if not labels:
            raise AVNASError(f"{path}:{line}: video '{name}' has no label")
        split = cells[col_split].lower() if col_split is not None else ""
        if split and split not in SPLIT_NAMES:
            raise AVNASError(f"{path}:{line}: split {split!r} of video '{name}' is not one of train, val, test")
        if name in rows:
            raise AVNASError(f"{path}:{line}: video '{name}' listed twice (first at line {rows[name].line})")
        rows[name] = _LabelRow(labels=labels, split=split or None, line=line)
    if not rows:
        raise AVNASError(f"{path}: labels CSV has a header but no row")
    return rows


# ---------------------------------------------------------------------------------------------- splits
def _hash_unit(seed: int, vid: str) -> float:
    digest = hashlib.sha256(f"{seed}\0{vid}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(
    ids: Sequence[str],
    given: dict[str, str | None] | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> dict[str, str]:
    """Deterministic train/val/test split of video ids.

    Parameters
    ----------
    ids : sequence of str
        Video ids.
    given : dict, optional
        Id to a fixed split (``train``/``val``/``test``) or None (decided here).
    val_fraction, test_fraction : float
        Shares of the hashed ids going to val and test.
    seed : int
        Hash seed.

    Returns
    -------
    dict
        Id to split. With three or more ids, an empty split takes one hashed id from the largest split.
    """
    given = given or {}
    units = {vid: _hash_unit(seed, vid) for vid in ids}
    splits: dict[str, str] = {}
    for vid in ids:
        fixed = given.get(vid)
        if fixed:
            splits[vid] = fixed
        elif units[vid] < val_fraction:
            splits[vid] = "val"
        elif units[vid] < val_fraction + test_fraction:
            splits[vid] = "test"
        else:
            splits[vid] = "train"
    if len(ids) >= 3:
        for target in ("val", "test", "train"):
            members = {name: [v for v in ids if splits[v] == name] for name in SPLIT_NAMES}
            if members[target]:
                continue
            donor = max((n for n in SPLIT_NAMES if n != target), key=lambda n: len(members[n]))
            movable = sorted((v for v in members[donor] if not given.get(v)), key=lambda v: (units[v], v))
            if len(members[donor]) < 2 or not movable:
                continue
            splits[movable[-1] if target == "train" else movable[0]] = target
    return splits


# ----------------------------------------------------------------------------------------------- report
@dataclass
class ExtractReport:
    """What :func:`extract_features` did.

    Attributes
    ----------
    out : pathlib.Path
        The output directory.
    config : pathlib.Path or None
        The written ``config.json`` (None if the run stopped before writing it).
    frames, dim : int
        m and d.
    class_names : list of str
        Class names; position = 0-based label.
    extracted : list of dict
        Per video in the dataset: ``id``, ``path``, ``frame_count``, ``labels``, ``split``, ``audio``
        (track or silence), ``notes``, ``resumed`` (features from an earlier run).
    skipped : list of dict
        Per video left out: ``id``, ``path``, ``reason``.
    seconds : float
        Wall time of the extraction loop (model loading excluded).
    new : int
        Videos featurized by this run (not resumed).
    """

    out: Path
    config: Path | None = None
    frames: int = 0
    dim: int = 0
    class_names: list[str] = field(default_factory=list)
    extracted: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    new: int = 0

    @property
    def videos_per_second(self) -> float:
        """New videos featurized per second of the extraction loop."""
        return self.new / self.seconds if self.seconds > 0 else 0.0

    def notes_count(self) -> dict[str, int]:
        """How many videos got silence, had frames repeated, or had another note."""
        counts = {"silence": 0, "frames_repeated": 0, "other_notes": 0, "resumed": 0}
        for entry in self.extracted:
            counts["resumed"] += bool(entry["resumed"])
            counts["silence"] += entry["audio"] == "silence"
            counts["frames_repeated"] += any(n.startswith("short video") for n in entry["notes"])
            counts["other_notes"] += any(
                not n.startswith(("short video", "no audio track")) for n in entry["notes"]
            )
        return counts

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (written as ``extract_report.json``)."""
        data = asdict(self)
        data["out"] = str(self.out)
        data["config"] = str(self.config) if self.config else None
        data["videos_per_second"] = self.videos_per_second
        data["counts"] = {"extracted": len(self.extracted), "skipped": len(self.skipped), "new": self.new,
                          **self.notes_count()}
        return data

    def summary_lines(self, limit: int = 20) -> list[str]:
        """Human-readable summary: counts, throughput, skipped videos with reasons, notes."""
        counts = self.notes_count()
        lines = [
            f"extracted {len(self.extracted)} videos ({self.new} new, {counts['resumed']} resumed), "
            f"skipped {len(self.skipped)}; m = {self.frames}, d = {self.dim}, {len(self.class_names)} classes",
            f"throughput: {self.videos_per_second:.2f} videos/s ({self.new} videos in {self.seconds:.1f} s)",
        ]
        if self.skipped:
            lines.append("skipped:")
            lines += [f"  {entry['path']}: {entry['reason']}" for entry in self.skipped[:limit]]
            if len(self.skipped) > limit:
                lines.append(f"  ... and {len(self.skipped) - limit} more (see {self.out / REPORT_NAME})")
        noted = [entry for entry in self.extracted if entry["notes"]]
        if noted:
            lines.append(f"notes ({counts['silence']} with silence for audio, {counts['frames_repeated']} "
                         f"shorter than {self.frames} frames):")
            lines += [f"  {entry['id']}: {'; '.join(entry['notes'])}" for entry in noted[:limit]]
            if len(noted) > limit:
                lines.append(f"  ... and {len(noted) - limit} more (see {self.out / REPORT_NAME})")
        if self.config:
            lines.append(f"dataset config: {self.config} (check it with: avnas data check {self.config})")
        return lines


# ------------------------------------------------------------------------------------------------ files
def _open_existing(path: Path) -> h5py.File | None:
    if not path.exists():
        return None
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise AVNASError(
            f"{path}: existing HDF5 file is unreadable (corrupt, maybe by a killed run): delete it to start over "
            f"({' '.join(str(exc).split())[:120]})"
        ) from exc


def _complete_ids(out: Path, m: int, d: int) -> dict[str, dict[str, Any]]:
    """Ids complete in both HDF5 files, with the attributes stored beside their visual vectors."""
    visual = _open_existing(out / VISUAL_NAME)
    audio = _open_existing(out / AUDIO_NAME)
    if visual is None or audio is None:
        for h5 in (visual, audio):
            if h5 is not None:
                h5.close()
        return {}
    complete: dict[str, dict[str, Any]] = {}
    with visual, audio:
        for vid in visual:
            try:
                v_group, a_group = visual[vid], audio.get(vid)
                if not isinstance(v_group, h5py.Group) or not isinstance(a_group, h5py.Group):
                    continue
                v_vec, a_vec = v_group.get("vectors"), a_group.get("vectors")
                if not isinstance(v_vec, h5py.Dataset) or not isinstance(a_vec, h5py.Dataset):
                    continue
                if v_vec.shape != (m, d) or a_vec.shape != (m, d) or "frame_count" not in v_group.attrs:
                    continue
                if "audio" not in a_group.attrs:
                    continue
                complete[vid] = {
                    "frame_count": int(v_group.attrs["frame_count"]),
                    "source_bytes": int(v_group.attrs.get("source_bytes", -1)),
                    "notes": json.loads(str(v_group.attrs.get("notes", "[]"))),
                    "audio": str(a_group.attrs["audio"]),
                }
            except (OSError, KeyError, ValueError, RuntimeError) as exc:  # h5py's errors for a damaged entry
                logger.warning("%s: video %r is damaged and will be extracted again (%s)", out, vid,
                               " ".join(str(exc).split())[:120])
                continue
    return complete


def _write_video(out: Path, vid: str, path: Path, features: VideoFeatures) -> None:
    """Write one video's vectors, visual file first; each file is closed (flushed) before the next."""
    attrs = {
        VISUAL_NAME: {"frame_count": features.frame_count, "source": str(path),
                      "source_bytes": path.stat().st_size, "notes": json.dumps(features.notes)},
        AUDIO_NAME: {"audio": features.audio_source},
    }
    for name, array in ((VISUAL_NAME, features.visual), (AUDIO_NAME, features.audio)):
        with h5py.File(out / name, "a") as h5:
            if vid in h5:
                del h5[vid]
            group = h5.create_group(vid)
            group.create_dataset("vectors", data=np.ascontiguousarray(array, dtype=np.float32))
            group.attrs.update(attrs[name])


def _write_layout(out: Path, entries: list[dict[str, Any]], class_names: list[str]) -> Path:
    index = {name: i for i, name in enumerate(class_names)}
    for split in SPLIT_NAMES:
        lines = [
            ",".join([e["id"], str(e["frame_count"]), *(str(i) for i in sorted(index[n] for n in e["labels"]))])
            for e in sorted(entries, key=lambda e: e["id"])
            if e["split"] == split
        ]
        atomic_write_text(out / f"{split}.txt", "\n".join(lines) + "\n")
    config = {
        "Image": VISUAL_NAME,
        "Audio": AUDIO_NAME,
        "num_class": len(class_names),
        "train_list": "train.txt",
        "val_list": "val.txt",
        "test_list": "test.txt",
        "retrieval_list": "train.txt",
        "list_format": "activitynet",
        "class_names": class_names,
    }
    config_path = out / CONFIG_NAME
    atomic_write_text(config_path, json.dumps(config, indent=2) + "\n")
    return config_path


def _write_report(report: ExtractReport) -> None:
    atomic_write_text(report.out / REPORT_NAME, json.dumps(report.to_dict(), indent=2) + "\n")


# --------------------------------------------------------------------------------------------- the run
def _load_encoder(model: Any, kind: type, device: str) -> Any:
    """A loaded encoder as given, or one loaded from a model directory."""
    return kind(model, device=device) if isinstance(model, str | os.PathLike) else model


def extract_features(
    videos: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    visual_model: str | os.PathLike | ClipVisualEncoder,
    audio_model: str | os.PathLike | AstAudioEncoder,
    labels_csv: str | os.PathLike | None = None,
    device: str = "cpu",
    frames: int = 25,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    missing_audio: str = "silence",
    progress: bool = True,
) -> ExtractReport:
    """Extract CLIP + AST features of video files into a dataset in the paper's layout.

    See the module docstring for the rules (ids, labels, splits, robustness, resuming).

    Parameters
    ----------
    videos : iterable of path
        Video files and/or directories (searched recursively).
    out : path
        Output directory (created; a rerun into it resumes).
    visual_model, audio_model : path or encoder
        Local directories of the CLIP and AST checkpoints, or loaded encoders.
    labels_csv : path, optional
        ``video,label[,split]`` CSV; without it the label is the folder holding each file.
    device : {"cpu", "cuda"}
        Where the models run.
    frames : int
        m, frames and audio segments per video (25 in the paper).
    val_fraction, test_fraction : float
        Hashed split shares.
    seed : int
        Split hash seed.
    missing_audio : {"silence", "skip"}
        What a video without an audio track gets.
    progress : bool
        Show a progress bar over the videos.

    Returns
    -------
    ExtractReport

    Raises
    ------
    AVNASError
        Bad inputs (no video, duplicate ids, a bad labels CSV or model directory), differing feature widths,
        or a dataset too small for the three splits (the features written stay for a rerun).
    """
    from tqdm import tqdm

    if frames < 1:
        raise SettingsError(f"frames must be at least 1, got {frames}")
    if missing_audio not in MISSING_AUDIO:
        raise SettingsError(f"missing audio must be one of {', '.join(MISSING_AUDIO)}, got {missing_audio!r}")
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise SettingsError(f"val and test fractions must be >= 0 with a sum below 1, got {val_fraction} and "
                         f"{test_fraction}")
    out_dir = Path(out).expanduser()
    sources = discover_videos(videos)
    rows = _read_label_rows(Path(labels_csv).expanduser()) if labels_csv is not None else None

    report = ExtractReport(out=out_dir, frames=frames)
    labelled: list[tuple[VideoSource, tuple[str, ...], str | None]] = []
    for source in sources:
        if rows is None:
            labelled.append((source, (source.folder,), None))
            continue
        row = next((rows[k] for k in (source.id, source.path.name, source.path.stem) if k in rows), None)
        if row is None:
            report.skipped.append({"id": source.id, "path": str(source.path),
                                   "reason": f"not in the labels CSV {labels_csv}"})
        else:
            labelled.append((source, row.labels, row.split))

    visual_encoder = _load_encoder(visual_model, ClipVisualEncoder, device)
    audio_encoder = _load_encoder(audio_model, AstAudioEncoder, device)
    report.dim = _check_encoders(visual_encoder, audio_encoder)
    out_dir.mkdir(parents=True, exist_ok=True)
    done = _complete_ids(out_dir, frames, report.dim)
    config_removed = False
    start = time.perf_counter()
    bar = tqdm(labelled, desc="extract", unit="video", disable=not progress, dynamic_ncols=True)
    for source, labels, split in bar:
        bar.set_postfix_str(source.id[-40:], refresh=False)
        entry = {"id": source.id, "path": str(source.path), "labels": list(labels), "given_split": split}
        previous = done.get(source.id)
        if previous is not None and previous["source_bytes"] == source.path.stat().st_size:
            if previous["audio"] == "silence" and missing_audio == "skip":
                report.skipped.append({"id": source.id, "path": str(source.path),
                                       "reason": "no usable audio track (missing audio: skip)"})
                continue
            entry.update(frame_count=previous["frame_count"], audio=previous["audio"], notes=previous["notes"],
                         resumed=True)
            report.extracted.append(entry)
            continue
        # An unusable video is skipped; anything else (a backbone bug, out of memory) stops the run, and a rerun
        # resumes after the videos written so far.
        try:
            features = featurize(source.path, visual_encoder, audio_encoder, frames=frames,
                                 missing_audio=missing_audio)
        except VideoError as exc:
            reason = str(exc)
            prefix = f"{source.path}: "
            report.skipped.append({"id": source.id, "path": str(source.path),
                                   "reason": reason[len(prefix):] if reason.startswith(prefix) else reason})
            logger.warning("skipped %s", exc)
            continue
        if not config_removed:
            # From here the HDF5 files change: no config may point at them until they are whole again.
            (out_dir / CONFIG_NAME).unlink(missing_ok=True)
            config_removed = True
        _write_video(out_dir, source.id, source.path, features)
        entry.update(frame_count=features.frame_count, audio=features.audio_source, notes=features.notes,
                     resumed=False)
        report.extracted.append(entry)
        report.new += 1
    bar.close()
    report.seconds = time.perf_counter() - start

    ids = [e["id"] for e in report.extracted]
    splits = assign_splits(ids, {e["id"]: e.pop("given_split") for e in report.extracted},
                           val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    for e in report.extracted:
        e["split"] = splits[e["id"]]
    report.class_names = sorted({name for e in report.extracted for name in e["labels"]})
    empty = [name for name in SPLIT_NAMES if not any(e["split"] == name for e in report.extracted)]
    if empty:
        _write_report(report)
        raise AVNASError(
            f"{len(ids)} videos extracted, but split {', '.join(empty)} would be empty: the layout needs at least "
            f"one video in each of train, val and test (at least 3 usable videos; check the CSV's split column). "
            f"The features are kept in {out_dir}: a rerun with more videos resumes"
        )
    report.config = _write_layout(out_dir, report.extracted, report.class_names)
    _write_report(report)

    from avnas_nni.data import load_dataset

    load_dataset(report.config, validate=True)  # self-check: the layout reads back
    return report
