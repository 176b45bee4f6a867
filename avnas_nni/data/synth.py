"""The embedded synthetic audio-visual dataset: the project's default data.

The paper's features (CLIP frames and AST audio, 25 × 768 per video) live on a host this machine cannot
reach, so the project ships a generator that writes exactly their layout (two HDF5 files, ActivityNet-form
split lists, a JSON config; see :mod:`avnas_nni.data.layout`) with a task that behaves like the real one
where it matters for architecture search.

How a video is made
-------------------
Classes come in blocks of eight, a 4 × 2 design: class ``r`` of a block (its *role*) has visual
identity ``r // 2`` and audio identity ``r % 2``:

=========  ====================================  ==============================================
modality   shared by                             so, alone, it confuses each class with
=========  ====================================  ==============================================
visual     two classes ("visual twins")          one other class
audio      four classes ("an audio group")       three other classes
=========  ====================================  ==============================================

Only the pair (visual identity, audio identity) names the class, so a network must fuse both streams to
separate a class from its visual twin, and audio alone is the weaker modality (three confusers, not one,
plus silent soundtracks). Identities are fresh in every block.

* **Visual** frames show a visual identity's three "events" (prototype vectors from a shared vocabulary,
  so bags of different identities overlap) one after another, with random lead-in/tail frames and random
  event durations. Each video perturbs the prototypes (within-class variation) and adds a scene
  component drifting over time, drawn from a distractor basis shared by all classes, and per-frame noise.
  Frames are smoothed over time as neighbouring CLIP frames are.
* **Audio** is a class-independent background texture (its own shared distractor basis) plus per-frame
  noise, over which the audio identity sounds twice: a steady *timbre* (the mean of its motif frames) over
  the whole clip, and the *motif* itself (three short, distinct frames in a fixed order) playing once or
  twice at random positions. In a fraction of videos the soundtrack carries neither.
* **Multi-label** videos (about 10 %) show two classes one after the other: the first class's events
  and sound in the first part of the clip, the second class's in the rest.

Why this design (version 4)
---------------------------
Version 3 (blocks of six: visual twins told apart by a diluted audio motif, order-only pairs, audio
twins) made the paper's claim fail on its own data: jointly trained audio-visual networks ignored audio
(shuffling the soundtracks across test videos flipped 1.4 % of the code bits of a Transformer+ expert)
and landed at the visual-only mAP. Only a third of the classes needed audio, through a motif on 3–6 of
25 frames under a stronger clip-constant texture, and the visual stream, learned first, starved it —
the modality competition known from multimodal training. Version 4 gives every class an audio-dependent
partner and an audio timbre visible after mean pooling; measured with ``python -m
benchmarks.embedded_modalities`` (see the README for the table).

Sizes
-----
Defaults (24 classes, 1,500 train / 300 val / 300 test videos, m = 25 frames, d = 48) keep a whole
search plus fine-tuning to minutes on two CPU cores: the training split is 1,500 × 25 × 48 floats per
modality (7 MB), and 24 classes give about 60 training videos per class, enough positives and four
distinct negative classes per triplet. d = 48 rather than 64 because the paper's attention cells use
12 heads and ``embed_dim`` must be divisible by the head count (768 = 12 × 64; 48 = 12 × 4).
m = 25 is the paper's frame count. Generation is deterministic for a seed (byte-identical HDF5
contents) and takes well under a second.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from avnas_nni.errors import SettingsError

__all__ = [
    "SYNTH_VERSION",
    "SyntheticData",
    "SyntheticSplit",
    "ClassStructure",
    "make_synthetic",
    "write_synthetic",
]

logger = logging.getLogger(__name__)

#: Bump whenever the generator's output changes, so cached copies of the embedded set are rebuilt.
SYNTH_VERSION = "4"

_EVENTS_PER_CLASS = 3
_MOTIF_LENGTH = 3
_SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class ClassStructure:
    """The hidden design of the synthetic classes.

    Attributes
    ----------
    visual_events : np.ndarray
        (num_class, 3) int: the visual event ids of each class, in temporal order.
    audio_motif : np.ndarray
        (num_class, 3) int: the audio motif frame ids of each class, in temporal order.
    role : np.ndarray
        (num_class,) int: the class's role in its block of eight (see the module docstring).
    """

    visual_events: np.ndarray
    audio_motif: np.ndarray
    role: np.ndarray

    def groups(self, modality: str) -> list[list[int]]:
        """Classes that share ``modality``'s evidence: visual twins or audio groups, in class order.

        Parameters
        ----------
        modality : str
            ``"visual"`` or ``"audio"``.

        Returns
        -------
        list of list of int
            One list per identity (a partial last block may give smaller groups).
        """
        if modality not in ("visual", "audio"):
            raise ValueError(f"modality must be 'visual' or 'audio', got {modality!r}")
        identity = self.visual_events if modality == "visual" else self.audio_motif
        groups: dict[tuple[int, ...], list[int]] = {}
        for c, row in enumerate(identity):
            groups.setdefault(tuple(row.tolist()), []).append(c)
        return list(groups.values())


@dataclass
class SyntheticSplit:
    """One split of the synthetic set, in memory.

    Attributes
    ----------
    ids : list of str
        Video ids (unique across all splits).
    labels : list of list of int
        0-based class labels per video (two for multi-label videos, first-shown class first).
    visual, audio : np.ndarray
        (n, m, d) float32 features.
    """

    ids: list[str]
    labels: list[list[int]]
    visual: np.ndarray
    audio: np.ndarray

    def multi_hot(self, num_class: int) -> np.ndarray:
        """Labels as an (n, num_class) bool matrix."""
        out = np.zeros((len(self.labels), num_class), dtype=bool)
        for row, labels in enumerate(self.labels):
            out[row, labels] = True
        return out


@dataclass
class SyntheticData:
    """The synthetic set in memory: the class design and the three splits."""

    num_class: int
    m: int
    d: int
    seed: int
    structure: ClassStructure
    splits: dict[str, SyntheticSplit] = field(default_factory=dict)


def _unit_rows(rng: np.random.Generator, rows: int, d: int) -> np.ndarray:
    vectors = rng.standard_normal((rows, d))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _class_structure(rng: np.random.Generator, num_class: int, n_visual_events: int, n_motif_frames: int):
    """Assign event sequences and motifs by block role; no two unrelated classes share a bag or motif."""
    role = np.arange(num_class) % 8
    visual = np.zeros((num_class, _EVENTS_PER_CLASS), dtype=np.int64)
    motif = np.zeros((num_class, _MOTIF_LENGTH), dtype=np.int64)
    used_bags: set[tuple[int, ...]] = set()
    used_motifs: set[tuple[int, ...]] = set()

    def new_bag() -> np.ndarray:
        while True:
            events = rng.choice(n_visual_events, size=_EVENTS_PER_CLASS, replace=False)
            key = tuple(sorted(events.tolist()))
            if key not in used_bags:
                used_bags.add(key)
                return events

    def new_motif() -> np.ndarray:
        while True:
            frames = rng.choice(n_motif_frames, size=_MOTIF_LENGTH, replace=False)
            key = tuple(sorted(frames.tolist()))
            if key not in used_motifs:
                used_motifs.add(key)
                return frames

    for c in range(num_class):
        r = role[c]
        visual[c] = visual[c - 1] if r % 2 else new_bag()  # visual twins: (0, 1), (2, 3), …
        motif[c] = motif[c - 2] if r >= 2 else new_motif()  # audio groups: even roles, odd roles
    return ClassStructure(visual_events=visual, audio_motif=motif, role=role)


def _segment_bounds(rng: np.random.Generator, start: int, stop: int, parts: int, min_len: int) -> np.ndarray:
    """Random cut points splitting [start, stop) into ``parts`` runs of at least ``min_len`` frames."""
    span = stop - start
    spare = span - parts * min_len
    weights = rng.dirichlet(np.full(parts, 3.0))
    lengths = min_len + np.floor(weights * spare).astype(np.int64)
    lengths[rng.integers(parts)] += span - lengths.sum()
    return start + np.concatenate([[0], np.cumsum(lengths)])


def _temporal_smooth(x: np.ndarray) -> np.ndarray:
    padded = np.concatenate([x[:, :1], x, x[:, -1:]], axis=1)
    return 0.25 * padded[:, :-2] + 0.5 * padded[:, 1:-1] + 0.25 * padded[:, 2:]


@dataclass(frozen=True)
class _Noise:
    """Knobs of the generator (fixed for a given SYNTH_VERSION)."""

    visual_jitter: float = 0.6  # norm of the per-video perturbation of each event prototype
    visual_scene: float = 0.6  # std of the shared-basis scene coefficients
    visual_frame: float = 0.3  # per-frame noise norm
    audio_jitter: float = 0.5
    # Version 1 (gain 1.6, texture 0.7, frame 1.0) left audio at chance for every network trained with
    # InfoNCE (mean-pooled between/within-class variance 0.018), though a closed-form ridge probe read it.
    audio_motif_gain: float = 2.0
    audio_texture: float = 0.35
    audio_frame: float = 0.6
    audio_timbre: float = 1.5  # the sound's steady colour over the whole clip: the motif's mean frame
    audio_silent: float = 0.1  # fraction of videos whose soundtrack carries no motif
    n_distractors: int = 8


def _make_split(
    rng: np.random.Generator,
    labels: list[list[int]],
    structure: ClassStructure,
    visual_protos: np.ndarray,
    motif_protos: np.ndarray,
    visual_distractors: np.ndarray,
    audio_distractors: np.ndarray,
    m: int,
    noise: _Noise,
) -> tuple[np.ndarray, np.ndarray]:
    n = len(labels)
    d = visual_protos.shape[1]
    visual = np.zeros((n, m, d))
    audio = np.zeros((n, m, d))
    for row, classes in enumerate(labels):
        # Time ranges per shown class: one class fills the clip after a random lead-in/tail; two share it.
        if len(classes) == 1:
            lead, tail = rng.integers(0, 4, size=2)
            ranges = [(int(lead), int(m - tail))]
        else:
            cut = int(rng.integers(int(0.4 * m), int(0.6 * m) + 1))
            ranges = [(0, cut), (cut, m)]
        evidence_gain = rng.uniform(0.7, 1.2)
        silent = rng.random() < noise.audio_silent
        for cls, (start, stop) in zip(classes, ranges, strict=True):
            min_len = min(2, (stop - start) // _EVENTS_PER_CLASS)
            bounds = _segment_bounds(rng, start, stop, _EVENTS_PER_CLASS, min_len=min_len)
            events = visual_protos[structure.visual_events[cls]]
            events = events + noise.visual_jitter / np.sqrt(d) * rng.standard_normal(events.shape)
            for k in range(_EVENTS_PER_CLASS):
                visual[row, bounds[k] : bounds[k + 1]] = evidence_gain * events[k]
            if silent:
                continue
            motif = motif_protos[structure.audio_motif[cls]]
            motif = motif + noise.audio_jitter / np.sqrt(d) * rng.standard_normal(motif.shape)
            audio[row, start:stop] += noise.audio_timbre * motif.mean(axis=0)
            plays = 1 if (stop - start) < 2 * _MOTIF_LENGTH + 2 or rng.random() < 0.5 else 2
            # Non-overlapping positions: draw from the free slots of a shortened range.
            free = stop - start - plays * _MOTIF_LENGTH
            offsets = np.sort(rng.choice(free + 1, size=plays, replace=False)) if free + 1 >= plays else [0]
            for i, offset in enumerate(offsets):
                pos = start + int(offset) + i * _MOTIF_LENGTH
                audio[row, pos : pos + _MOTIF_LENGTH] += noise.audio_motif_gain * motif
    # Shared, class-independent components: a scene drifting linearly between two basis mixtures.
    coeff_a = noise.visual_scene * rng.standard_normal((n, 2, noise.n_distractors))
    scene = coeff_a @ visual_distractors  # (n, 2, d)
    ramp = np.linspace(0.0, 1.0, m)[None, :, None]
    visual += (1 - ramp) * scene[:, :1] + ramp * scene[:, 1:]
    visual = _temporal_smooth(visual)
    visual += noise.visual_frame / np.sqrt(d) * rng.standard_normal(visual.shape)
    coeff_b = noise.audio_texture * rng.standard_normal((n, 1, noise.n_distractors))
    audio += coeff_b @ audio_distractors
    audio += noise.audio_frame / np.sqrt(d) * rng.standard_normal(audio.shape)
    return visual.astype(np.float32), audio.astype(np.float32)


def _draw_labels(rng: np.random.Generator, n: int, num_class: int, multi_label_fraction: float):
    # Balanced single labels (a shuffled repeat of all classes), then some videos get a second class.
    first = rng.permutation(np.resize(np.arange(num_class), n))
    labels = [[int(c)] for c in first]
    if num_class > 1:
        for row in np.flatnonzero(rng.random(n) < multi_label_fraction):
            other = int(rng.integers(num_class - 1))
            labels[row].append(other + (other >= labels[row][0]))
    return labels


def make_synthetic(
    *,
    num_class: int = 24,
    n_train: int = 1500,
    n_val: int = 300,
    n_test: int = 300,
    m: int = 25,
    d: int = 48,
    multi_label_fraction: float = 0.1,
    seed: int = 3346,
) -> SyntheticData:
    """Generate the synthetic set in memory.

    Parameters
    ----------
    num_class : int
        Number of classes (at least 2). Blocks of eight realise the roles of the module docstring.
    n_train, n_val, n_test : int
        Videos per split (each at least 1).
    m : int
        Frames per video (at least 12, so three events and a motif fit).
    d : int
        Feature dimension of both modalities (at least 8).
    multi_label_fraction : float
        Expected fraction of videos with two labels.
    seed : int
        Everything is a function of the seed.

    Returns
    -------
    SyntheticData
    """
    if num_class < 2:
        raise SettingsError(f"num_class must be at least 2, got {num_class}")
    if m < 12:
        raise SettingsError(f"m must be at least 12 frames, got {m}")
    if d < 8:
        raise SettingsError(f"d must be at least 8, got {d}")
    if min(n_train, n_val, n_test) < 1:
        raise SettingsError("every split needs at least one video")
    if not 0.0 <= multi_label_fraction <= 1.0:
        raise SettingsError(f"multi_label_fraction must be in [0, 1], got {multi_label_fraction}")
    noise = _Noise()
    rng = np.random.default_rng(seed)
    n_visual_events = max(8, num_class)
    n_motif_frames = max(8, num_class // 2 + 4)
    structure = _class_structure(rng, num_class, n_visual_events, n_motif_frames)
    visual_protos = _unit_rows(rng, n_visual_events, d)
    motif_protos = _unit_rows(rng, n_motif_frames, d)
    visual_distractors = _unit_rows(rng, noise.n_distractors, d)
    audio_distractors = _unit_rows(rng, noise.n_distractors, d)
    data = SyntheticData(num_class=num_class, m=m, d=d, seed=seed, structure=structure)
    for split, n in zip(_SPLIT_NAMES, (n_train, n_val, n_test), strict=True):
        split_rng = np.random.default_rng([seed, _SPLIT_NAMES.index(split) + 1])
        labels = _draw_labels(split_rng, n, num_class, multi_label_fraction)
        visual, audio = _make_split(
            split_rng,
            labels,
            structure,
            visual_protos,
            motif_protos,
            visual_distractors,
            audio_distractors,
            m,
            noise,
        )
        ids = [f"v_syn_{split}_{i:05d}" for i in range(n)]
        data.splits[split] = SyntheticSplit(ids=ids, labels=labels, visual=visual, audio=audio)
    return data


def _write_h5(path: Path, data: SyntheticData, modality: str) -> None:
    # track_times=False keeps the file byte-identical across runs (HDF5 stamps object times otherwise).
    with h5py.File(path, "w", libver="earliest", track_order=False) as f:
        for split in _SPLIT_NAMES:
            part = data.splits[split]
            features = getattr(part, modality)
            for vid, vectors in zip(part.ids, features, strict=True):
                group = f.create_group(vid, track_order=False)
                group.create_dataset("vectors", data=vectors, track_times=False)


def _atomic_write(path: Path, write) -> None:
    """Write via ``write(tmp_path)`` to a temporary sibling, then rename onto ``path``."""
    # A unique name rather than mkstemp, whose 0600 mode would stick to the published file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_synthetic(
    out_dir: str | os.PathLike,
    *,
    num_class: int = 24,
    n_train: int = 1500,
    n_val: int = 300,
    n_test: int = 300,
    m: int = 25,
    d: int = 48,
    multi_label_fraction: float = 0.1,
    seed: int = 3346,
) -> Path:
    """Write the synthetic set in the paper's feature layout and return the path of its config.

    Writes ``visual.h5``, ``audio.h5``, ``train.txt``, ``val.txt``, ``test.txt`` (ActivityNet form:
    ``name,frame_count,label[,label...]``, 0-based) and ``config.json`` (relative paths; the retrieval
    list is the training list, as in the paper). Each file is written to a temporary name and renamed,
    ``config.json`` last, so a directory with a config is complete.

    Parameters
    ----------
    out_dir : path
        Created if missing.
    num_class, n_train, n_val, n_test, m, d, multi_label_fraction, seed
        As in :func:`make_synthetic`.

    Returns
    -------
    pathlib.Path
        ``out_dir / "config.json"``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = make_synthetic(
        num_class=num_class,
        n_train=n_train,
        n_val=n_val,
        n_test=n_test,
        m=m,
        d=d,
        multi_label_fraction=multi_label_fraction,
        seed=seed,
    )
    _atomic_write(out / "visual.h5", lambda p: _write_h5(p, data, "visual"))
    _atomic_write(out / "audio.h5", lambda p: _write_h5(p, data, "audio"))
    frame_rng = np.random.default_rng([seed, 0])
    for split in _SPLIT_NAMES:
        part = data.splits[split]
        # A plausible source frame count (ActivityNet-form lists carry one); nothing reads it.
        frames = frame_rng.integers(300, 6000, size=len(part.ids))
        lines = [
            ",".join([vid, str(int(count)), *map(str, labels)])
            for vid, count, labels in zip(part.ids, frames, part.labels, strict=True)
        ]
        text = "\n".join(lines) + "\n"
        _atomic_write(out / f"{split}.txt", lambda p, text=text: p.write_text(text))
    config = {
        "Image": "visual.h5",
        "Audio": "audio.h5",
        "num_class": num_class,
        "train_list": "train.txt",
        "val_list": "val.txt",
        "test_list": "test.txt",
        "retrieval_list": "train.txt",
        "list_format": "activitynet",
        "synthetic": {"version": SYNTH_VERSION, "seed": seed, "m": m, "d": d},
    }
    config_path = out / "config.json"
    _atomic_write(config_path, lambda p: p.write_text(json.dumps(config, indent=2) + "\n"))
    logger.info("wrote synthetic dataset (%d classes, seed %d) to %s", num_class, seed, out)
    return config_path
