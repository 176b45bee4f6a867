"""Read and validate the paper's feature layout: a JSON config, two HDF5 files and four split lists.

The layout (SPEC §1, the AV-NAS/AVHash lineage)::

    config.json   {"Image": "visual.h5", "Audio": "audio.h5", "num_class": 200,
                   "train_list": "train.txt", "val_list": "val.txt", "test_list": "test.txt",
                   "retrieval_list": "train.txt"}          # optional: "list_format": "activitynet"|"fcvid"
    visual.h5     /<video id>/vectors   float (m, d), one group per video
    audio.h5      /<video id>/vectors   float (m, d), same m and d as the visual file
    *.txt         one video a line: "name,frame_count,label[,label...]" (ActivityNet, 0-based labels)
                  or "name,label" (FCVID, 1-based); blank lines are ignored

Relative paths in the config resolve against the config file's directory. The list form is decided per
file from its first line (two fields: FCVID; three or more with an integer frame count: ActivityNet) unless
the config forces it with ``list_format`` (or with the authors' key ``dataset``: ``"actnet"`` or
``"fcvid"``, so their configs load as they are once their ``{local_dir}`` placeholders are filled in).
Labels are kept as a multi-hot matrix, so multi-label videos (ActivityNet) keep every label.

Every problem is a :class:`~avnas_nni.errors.DataError` with a one-line message naming the file and the
field, video id or line at fault. The special config name ``"embedded"`` stands for the synthetic set of
:mod:`avnas_nni.data.synth`, generated once into a cache directory.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from avnas_nni.data.synth import SYNTH_VERSION, write_synthetic
from avnas_nni.errors import DataError

__all__ = [
    "EMBEDDED",
    "EMBEDDED_SETS",
    "LIST_FORMATS",
    "SPLITS",
    "DatasetConfig",
    "SplitList",
    "FeatureDataset",
    "read_config",
    "read_split_list",
    "load_dataset",
    "check_dataset",
    "cache_root",
    "embedded_config",
]

logger = logging.getLogger(__name__)

#: The config name that stands for the embedded synthetic dataset.
EMBEDDED = "embedded"

#: Every embedded synthetic set by config name, with its generator arguments. ``embedded-b`` plays FCVID's part in
#: the paper's cross-test (Arch-2 is searched on it, Arch-1 on ``embedded``): other classes (32), another draw,
#: the same layout and sizes.
EMBEDDED_SETS: dict[str, dict[str, int]] = {EMBEDDED: {}, "embedded-b": {"num_class": 32, "seed": 2025}}
#: Split names, in the order they are checked and reported.
SPLITS = ("train", "val", "test", "retrieval")
#: Accepted values of the optional config key ``list_format``.
LIST_FORMATS = ("activitynet", "fcvid")

_LIST_KEYS = {split: f"{split}_list" for split in SPLITS}
_FILE_KEYS = {"visual": "Image", "audio": "Audio"}
_REQUIRED_KEYS = ("Image", "Audio", "num_class", *_LIST_KEYS.values())
_LINEAGE_DATASETS = {"actnet": "activitynet", "activitynet": "activitynet", "fcvid": "fcvid"}
_FORM_TEXT = {
    "activitynet": "'name,frame_count,label[,label...]' (ActivityNet form, 0-based labels)",
    "fcvid": "'name,label' (FCVID form, 1-based labels)",
}
# Videos read per block while validating: bounds memory (256 × 25 × 768 × 4 B = 20 MB at paper size).
_VALIDATE_BLOCK = 256


def _one_line(text: object, limit: int = 160) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _placeholder_hint(path: Path) -> str:
    # The authors' configs ship paths like "{local_dir}/act_vit.h5" to be filled in by hand.
    return "; fill in the '{...}' placeholder" if "{" in str(path) else ""


# --------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class DatasetConfig:
    """A parsed dataset config with every path resolved.

    Attributes
    ----------
    path : pathlib.Path
        The config file.
    visual_path, audio_path : pathlib.Path
        The two HDF5 files (config keys ``Image`` and ``Audio``).
    num_class : int
        Number of classes.
    lists : dict of str to pathlib.Path
        Split name (``train``, ``val``, ``test``, ``retrieval``) to its list file.
    list_format : str or None
        ``"activitynet"`` or ``"fcvid"`` when the config forces the list form (key ``list_format``, or the
        authors' key ``dataset``: ``"actnet"``/``"fcvid"``), else None (decided per file).
    """

    path: Path
    visual_path: Path
    audio_path: Path
    num_class: int
    lists: dict[str, Path]
    list_format: str | None = None


def read_config(path: str | os.PathLike) -> DatasetConfig:
    """Parse and check a dataset config; the files it names are not opened.

    Parameters
    ----------
    path : path
        The JSON config file.

    Returns
    -------
    DatasetConfig

    Raises
    ------
    DataError
        File missing, not JSON, not an object, a key missing or of the wrong type.
    """
    config_path = Path(path).expanduser()
    if not config_path.is_file():
        raise DataError(f"{config_path}: dataset config not found")
    try:
        raw = json.loads(config_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{config_path}: dataset config is not UTF-8 text ({exc.reason})") from exc
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{config_path}: dataset config is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from exc
    if not isinstance(raw, dict):
        raise DataError(
            f"{config_path}: dataset config must be a JSON object with keys {', '.join(_REQUIRED_KEYS)}, "
            f"got a {type(raw).__name__}"
        )
    for key in _REQUIRED_KEYS:
        if key not in raw:
            raise DataError(f"{config_path}: missing key '{key}' (required: {', '.join(_REQUIRED_KEYS)})")
    num_class = raw["num_class"]
    if isinstance(num_class, bool) or not isinstance(num_class, int) or num_class < 1:
        raise DataError(
            f"{config_path}: key 'num_class' must be a positive integer, got {num_class!r} ({type(num_class).__name__})"
        )
    base = config_path.resolve().parent

    def resolve(key: str) -> Path:
        value = raw[key]
        if not isinstance(value, str) or not value.strip():
            raise DataError(
                f"{config_path}: key '{key}' must be a non-empty path string, got {value!r} ({type(value).__name__})"
            )
        target = Path(value).expanduser()
        return target if target.is_absolute() else base / target

    list_format = raw.get("list_format")
    if list_format is not None and list_format not in LIST_FORMATS:
        raise DataError(
            f"{config_path}: key 'list_format' must be one of {', '.join(map(repr, LIST_FORMATS))}, got {list_format!r}"
        )
    if list_format is None:
        # The authors' configs name the dataset instead: "actnet" or "fcvid" fixes the list form.
        list_format = _LINEAGE_DATASETS.get(str(raw.get("dataset", "")).lower())
    return DatasetConfig(
        path=config_path,
        visual_path=resolve("Image"),
        audio_path=resolve("Audio"),
        num_class=num_class,
        lists={split: resolve(key) for split, key in _LIST_KEYS.items()},
        list_format=list_format,
    )


# ---------------------------------------------------------------------------------------- split lists
@dataclass
class SplitList:
    """One parsed split list.

    Attributes
    ----------
    path : pathlib.Path
        The list file.
    list_format : str
        ``"activitynet"`` or ``"fcvid"``: the form the file was read in.
    ids : list of str
        Video ids in file order.
    labels : np.ndarray
        (n, num_class) bool multi-hot labels, 0-based class columns.
    """

    path: Path
    list_format: str
    ids: list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def _detect_form(fields: list[str]) -> str | None:
    if len(fields) == 2:
        return "fcvid"
    if len(fields) >= 3 and fields[1].lstrip("+-").isdigit():
        return "activitynet"
    return None


def read_split_list(
    path: str | os.PathLike, num_class: int, list_format: str | None = None, *, named_by: str | None = None
) -> SplitList:
    """Parse a split list in ActivityNet or FCVID form.

    Parameters
    ----------
    path : path
        The list file.
    num_class : int
        Labels must lie in ``0..num_class-1`` (ActivityNet) or ``1..num_class`` (FCVID).
    list_format : {"activitynet", "fcvid"}, optional
        Force the form; by default it is decided from the first line.
    named_by : str, optional
        Who named the file (e.g. "key 'val_list' in config.json"), quoted in the "not found" message.

    Returns
    -------
    SplitList

    Raises
    ------
    DataError
        Missing file, unparsable line, label out of range, duplicate id, or no video at all.
    """
    list_path = Path(path)
    if list_format is not None and list_format not in LIST_FORMATS:
        raise ValueError(f"list_format must be one of {LIST_FORMATS}, got {list_format!r}")
    if not list_path.is_file():
        where = f" (named by {named_by})" if named_by else ""
        raise DataError(f"{list_path}: split list not found{where}{_placeholder_hint(list_path)}")
    try:
        text = list_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{list_path}: split list is not UTF-8 text ({exc.reason})") from exc
    form = list_format
    form_origin = "the config's list_format"
    ids: list[str] = []
    label_sets: list[list[int]] = []
    first_line: dict[str, int] = {}
    for lineno, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if not line:
            continue
        fields = [part.strip() for part in line.split(",")]
        where = f"{list_path}:{lineno}"
        if form is None:
            form = _detect_form(fields)
            form_origin = f"line {lineno}"
            if form is None:
                raise DataError(
                    f"{where}: cannot tell the list form from {_one_line(line, 80)!r}: expected "
                    f"{_FORM_TEXT['fcvid']} or {_FORM_TEXT['activitynet']}"
                )
        if form == "fcvid":
            ok = len(fields) == 2
        else:
            ok = len(fields) >= 3 and fields[1].lstrip("+-").isdigit()
        if not ok or not fields[0]:
            raise DataError(
                f"{where}: expected {_FORM_TEXT[form]} (form set by {form_origin}), got {_one_line(line, 80)!r}"
            )
        name = fields[0]
        if name in first_line:
            raise DataError(f"{where}: video '{name}' listed twice in one split (first at line {first_line[name]})")
        first_line[name] = lineno
        raw_labels = fields[1:] if form == "fcvid" else fields[2:]
        offset = 1 if form == "fcvid" else 0
        labels: list[int] = []
        for token in raw_labels:
            try:
                value = int(token)
            except ValueError:
                raise DataError(f"{where}: label {token!r} of video '{name}' is not an integer") from None
            if not offset <= value < num_class + offset:
                base = "1-based" if offset else "0-based"
                raise DataError(
                    f"{where}: label {value} of video '{name}' out of range: {form} labels are {base}, "
                    f"expected {offset}..{num_class - 1 + offset} (num_class {num_class})"
                )
            labels.append(value - offset)
        ids.append(name)
        label_sets.append(labels)
    if not ids:
        raise DataError(f"{list_path}: split list is empty (expected one video a line)")
    multi_hot = np.zeros((len(ids), num_class), dtype=bool)
    for row, labels in enumerate(label_sets):
        multi_hot[row, labels] = True
    assert form is not None
    return SplitList(path=list_path, list_format=form, ids=ids, labels=multi_hot)


# ----------------------------------------------------------------------------------------------- HDF5
def _open_h5(path: Path, modality: str, config: DatasetConfig) -> h5py.File:
    if not path.is_file():
        raise DataError(
            f"{path}: {modality} HDF5 file not found (config key '{_FILE_KEYS[modality]}' in {config.path})"
            f"{_placeholder_hint(path)}"
        )
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file, corrupt or of another format ({_one_line(exc)})") from exc


def _vectors(h5: h5py.File, path: Path, vid: str) -> h5py.Dataset:
    """The ``vectors`` dataset of one video, with its kind and rank checked."""
    try:
        group = h5.get(vid)
        if group is None:
            raise DataError(f"{path}: video '{vid}' is not in this file")
        if not isinstance(group, h5py.Group):
            raise DataError(f"{path}: '{vid}' is a {type(group).__name__}, expected a group holding 'vectors'")
        vectors = group.get("vectors")
    except (OSError, KeyError, RuntimeError) as exc:
        raise DataError(f"{path}: cannot read video '{vid}', file corrupt? ({_one_line(exc)})") from exc
    if not isinstance(vectors, h5py.Dataset):
        raise DataError(f"{path}: group '{vid}' has no dataset 'vectors' (expected float32 (m, d))")
    if vectors.dtype.kind != "f":
        raise DataError(f"{path}: video '{vid}' vectors have dtype {vectors.dtype}, expected float32")
    if vectors.ndim != 2:
        raise DataError(f"{path}: video '{vid}' vectors have shape {vectors.shape}, expected 2-D (m, d)")
    return vectors


def _read_video(h5: h5py.File, path: Path, vid: str, out: np.ndarray, reference: str) -> None:
    """Read one video's ``vectors`` into ``out`` (m, d) float32.

    The low-level path costs a quarter of the high-level one per video; anything it does not accept goes
    through :func:`_vectors`, which names the exact problem.
    """
    try:
        dataset_id = h5py.h5d.open(h5.id, f"{vid}/vectors".encode())
        fast = dataset_id.dtype.kind == "f" and dataset_id.shape == out.shape
    except (KeyError, OSError, ValueError, RuntimeError, TypeError):
        fast = False
    try:
        if fast:
            dataset_id.read(h5py.h5s.ALL, h5py.h5s.ALL, out)  # HDF5 converts float16/64 to float32
            return
        vectors = _vectors(h5, path, vid)
        if vectors.shape != out.shape:
            raise DataError(
                f"{path}: video '{vid}' vectors have shape {vectors.shape}, expected {out.shape} {reference}"
            )
        vectors.read_direct(out)
    except (OSError, RuntimeError, TypeError) as exc:
        raise DataError(f"{path}: cannot read video '{vid}', file corrupt? ({_one_line(exc)})") from exc


def _check_finite(block: np.ndarray, ids: Sequence[str], path: Path) -> None:
    finite = np.isfinite(block).reshape(len(block), -1).all(axis=1)
    if not finite.all():
        vid = ids[int(np.flatnonzero(~finite)[0])]
        raise DataError(f"{path}: video '{vid}' has non-finite values (NaN or inf) in 'vectors'")


# -------------------------------------------------------------------------------------------- dataset
@dataclass
class FeatureDataset:
    """A dataset in the paper's layout: the config, the parsed split lists and access to the features.

    Features are read on demand (:meth:`read`, :meth:`features`), as float32 arrays of shape (n, m, d);
    nothing keeps an HDF5 handle open, so the object pickles and crosses process boundaries.

    Attributes
    ----------
    config : DatasetConfig
    m : int
        Frames (time steps) per video.
    d : int
        Feature dimension of both modalities.
    splits : dict of str to SplitList
        ``train``, ``val``, ``test`` and ``retrieval``.
    """

    config: DatasetConfig
    m: int
    d: int
    splits: dict[str, SplitList] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        """The config file."""
        return self.config.path

    @property
    def num_class(self) -> int:
        """Number of classes."""
        return self.config.num_class

    def _split(self, split: str) -> SplitList:
        if split not in self.splits:
            raise KeyError(f"unknown split {split!r}; expected one of {', '.join(self.splits)}")
        return self.splits[split]

    def ids(self, split: str) -> list[str]:
        """Video ids of a split, in list order."""
        return list(self._split(split).ids)

    def labels(self, split: str) -> np.ndarray:
        """(n, num_class) bool multi-hot labels of a split."""
        return self._split(split).labels

    def read(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Read the features of some videos.

        Parameters
        ----------
        ids : sequence of str
            Video ids, in the order wanted (any subset of the files' videos).

        Returns
        -------
        visual, audio : np.ndarray
            (len(ids), m, d) float32 each.

        Raises
        ------
        DataError
            An id absent from a file, a bad shape or dtype, non-finite values, an unreadable file.
        """
        out = []
        for modality in ("visual", "audio"):
            path = getattr(self.config, f"{modality}_path")
            array = np.empty((len(ids), self.m, self.d), dtype=np.float32)
            with _open_h5(path, modality, self.config) as h5:
                for row, vid in enumerate(ids):
                    _read_video(h5, path, vid, array[row], reference="(m, d) of this dataset")
            _check_finite(array, ids, path)
            out.append(array)
        return out[0], out[1]

    def features(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Read a whole split into memory: ``(visual, audio)``, each (n, m, d) float32."""
        return self.read(self._split(split).ids)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description: sizes, classes, shapes, multi-label counts and split overlaps.

        Returns
        -------
        dict
            Keys ``config``, ``visual_file``, ``audio_file``, ``num_class``, ``m``, ``d``, ``videos``
            (distinct ids over all splits), ``splits`` (per split: ``list``, ``list_format``, ``videos``,
            ``classes_present``, ``multi_label``, ``max_labels``), ``overlaps`` (ids shared by the
            val/test/retrieval splits; the paper's retrieval database is the training set) and
            ``file_sizes`` (bytes per file).
        """
        splits = {}
        for name, part in self.splits.items():
            per_video = part.labels.sum(axis=1)
            splits[name] = {
                "list": str(part.path),
                "list_format": part.list_format,
                "videos": len(part),
                "classes_present": int(part.labels.any(axis=0).sum()),
                "multi_label": int((per_video > 1).sum()),
                "max_labels": int(per_video.max()),
            }
        id_sets = {name: set(part.ids) for name, part in self.splits.items()}
        overlaps = {
            f"{a}&{b}": len(id_sets[a] & id_sets[b])
            for a, b in (("val", "test"), ("val", "retrieval"), ("test", "retrieval"), ("train", "test"))
            if a in id_sets and b in id_sets
        }
        files = {"Image": self.config.visual_path, "Audio": self.config.audio_path}
        files.update({_LIST_KEYS[name]: part.path for name, part in self.splits.items()})
        return {
            "config": str(self.config.path),
            "visual_file": str(self.config.visual_path),
            "audio_file": str(self.config.audio_path),
            "num_class": self.num_class,
            "m": self.m,
            "d": self.d,
            "videos": len(set().union(*id_sets.values())),
            "splits": splits,
            "overlaps": overlaps,
            "file_sizes": {key: path.stat().st_size for key, path in files.items()},
        }


def _check_membership(config: DatasetConfig, splits: dict[str, SplitList]) -> None:
    for modality in ("visual", "audio"):
        path = getattr(config, f"{modality}_path")
        with _open_h5(path, modality, config) as h5:
            for part in splits.values():
                missing = []
                vid = ""
                try:
                    for vid in part.ids:
                        if vid not in h5:
                            missing.append(vid)
                except (OSError, RuntimeError, KeyError, ValueError) as exc:
                    raise DataError(f"{path}: cannot look up video '{vid}', file corrupt? ({_one_line(exc)})") from exc
                if missing:
                    more = f"; {len(missing) - 1} more missing" if len(missing) > 1 else ""
                    raise DataError(
                        f"{path}: video '{missing[0]}' listed in {part.path} is missing from this {modality} file{more}"
                    )


def _probe_shape(config: DatasetConfig, vid: str) -> tuple[int, int]:
    with _open_h5(config.visual_path, "visual", config) as h5:
        shape = _vectors(h5, config.visual_path, vid).shape
    return int(shape[0]), int(shape[1])


def _validate_contents(config: DatasetConfig, ids: list[str], m: int, d: int) -> None:
    """Stream every video of both files once: group, dataset, dtype, shape (m, d), finite values."""
    block = np.empty((_VALIDATE_BLOCK, m, d), dtype=np.float32)
    reference = f"like the first training video '{ids[0]}' in {config.visual_path}"
    for modality in ("visual", "audio"):
        path = getattr(config, f"{modality}_path")
        with _open_h5(path, modality, config) as h5:
            for start in range(0, len(ids), _VALIDATE_BLOCK):
                chunk = ids[start : start + _VALIDATE_BLOCK]
                for row, vid in enumerate(chunk):
                    _read_video(h5, path, vid, block[row], reference=reference)
                _check_finite(block[: len(chunk)], chunk, path)


def cache_root() -> Path:
    """Where avnas-nni caches generated data: ``$AVNAS_CACHE`` or ``~/.cache/avnas_nni``."""
    env = os.environ.get("AVNAS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "avnas_nni"


def embedded_config(name: str = EMBEDDED) -> Path:
    """The config of an embedded synthetic set (:data:`EMBEDDED_SETS`), generating it first if the cache lacks it.

    The set is written to a temporary directory beside its final place and renamed into
    ``cache_root() / f"{name}-{SYNTH_VERSION}"`` when complete, so concurrent callers and
    interrupted runs never see half a dataset.

    Returns
    -------
    pathlib.Path
        The ``config.json`` of the cached set.
    """
    if name not in EMBEDDED_SETS:
        raise DataError(f"{name}: not an embedded dataset; expected one of {sorted(EMBEDDED_SETS)}")
    root = cache_root()
    target = root / f"{name}-{SYNTH_VERSION}"
    config_path = target / "config.json"
    if config_path.is_file():
        return config_path
    if target.exists() and any(target.iterdir()):
        raise DataError(f"{target}: cache directory exists without config.json; delete it to regenerate")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-{SYNTH_VERSION}-", dir=root))
    mask = os.umask(0)
    os.umask(mask)
    tmp.chmod(0o777 & ~mask)  # mkdtemp's 0700 would otherwise stick to the published cache directory
    try:
        write_synthetic(tmp, **EMBEDDED_SETS[name])
        try:
            os.replace(tmp, target)
        except OSError:
            if not config_path.is_file():  # not a lost race with another process: a real failure
                raise
            logger.debug("another process generated %s first", target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("generated the embedded synthetic dataset %s in %s", name, target)
    return config_path


def load_dataset(config: str | os.PathLike, validate: bool = True) -> FeatureDataset:
    """Open a dataset in the paper's layout.

    Parameters
    ----------
    config : path or "embedded"
        The JSON config; ``"embedded"`` loads the synthetic set (see :func:`embedded_config`).
    validate : bool
        Check every listed video in both HDF5 files (presence, ``vectors`` dataset, float dtype, one
        shared (m, d), finite values), streaming through the files once. Without it only the config,
        the lists and the first video's shape are read; problems then surface when features are read.

    Returns
    -------
    FeatureDataset

    Raises
    ------
    DataError
        Any departure from the layout, with a one-line message naming the file and the field, id or line.
    """
    config_path = embedded_config(str(config)) if str(config) in EMBEDDED_SETS else Path(config)
    parsed = read_config(config_path)
    splits = {
        split: read_split_list(
            parsed.lists[split],
            parsed.num_class,
            parsed.list_format,
            named_by=f"key '{_LIST_KEYS[split]}' in {parsed.path}",
        )
        for split in SPLITS
    }
    # Open both files early so a missing or non-HDF5 file is reported before any id is looked up.
    for modality in ("visual", "audio"):
        _open_h5(getattr(parsed, f"{modality}_path"), modality, parsed).close()
    if validate:
        _check_membership(parsed, splits)
    m, d = _probe_shape(parsed, splits["train"].ids[0])
    if validate:
        ordered = list(dict.fromkeys(vid for part in splits.values() for vid in part.ids))
        _validate_contents(parsed, ordered, m, d)
    return FeatureDataset(config=parsed, m=m, d=d, splits=splits)


def check_dataset(config: str | os.PathLike) -> dict[str, Any]:
    """Validate a dataset fully and return :meth:`FeatureDataset.summary`.

    Parameters
    ----------
    config : path or "embedded"

    Returns
    -------
    dict

    Raises
    ------
    DataError
    """
    return load_dataset(config, validate=True).summary()
