"""Decode one video with PyAV: m uniformly sampled RGB frames and m aligned 16 kHz mono audio segments.

Sampling. A cheap first pass counts the video stream's packets: n frames. The second pass decodes frames in
presentation order and keeps those at indices ``round(linspace(0, n - 1, m))``, each resized to
``size × size`` RGB with ``frame.reformat`` (the aspect ratio is not kept: the CLIP processor then sees a
square image and crops nothing away). A video shorter than m frames has indices that repeat, so its frames
repeat; when fewer frames decode than were counted (a damaged tail), every target past the last decoded
frame takes that frame. Both cases are noted.

Audio. The first audio track is decoded whole, resampled to 16 kHz mono float32 with
:class:`av.AudioResampler` and cut into m equal consecutive segments, segment i lying beside frame i. A
video without an audio track (or with one that yields no sample) gets ``audio=None``; the caller decides
between silence (:func:`silence_segments`) and skipping.

Only PyAV is used: torchvision, torchaudio and torchcodec ship CUDA builds that break beside a CPU torch.
Every failure that makes a video unusable is a :class:`~avnas_nni.errors.VideoError` whose one-line
message names the file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from avnas_nni.errors import SettingsError, VideoError

__all__ = ["AUDIO_RATE", "DecodedVideo", "decode_video", "frame_indices", "silence_segments"]

logger = logging.getLogger(__name__)

#: Sampling rate of the audio segments (AST's rate), in Hz.
AUDIO_RATE = 16_000


def _one_line(text: object, limit: int = 160) -> str:
    if isinstance(text, av.FFmpegError) and getattr(text, "strerror", None):
        text = text.strerror  # without the file name, which the message already leads with
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


@dataclass
class DecodedVideo:
    """One decoded video.

    Attributes
    ----------
    path : pathlib.Path
        The video file.
    frames : np.ndarray
        (m, size, size, 3) uint8 RGB frames at the sampled indices.
    audio : list of np.ndarray or None
        m float32 mono 16 kHz segments (consecutive, equal up to one sample), or None without audio.
    frame_count : int
        n, the video packets counted in the first pass (the frame count written to the split lists).
    decoded_frames : int
        Frames actually decoded up to the last sampled index.
    seconds : float
        Duration of the video stream (for silence of the right length).
    notes : list of str
        What was done beyond the plain path: frames repeated, a damaged tail, an audio problem.
    """

    path: Path
    frames: np.ndarray
    audio: list[np.ndarray] | None
    frame_count: int
    decoded_frames: int
    seconds: float
    notes: list[str] = field(default_factory=list)


def frame_indices(n: int, m: int) -> np.ndarray:
    """The m frame indices sampled uniformly from n frames: ``round(linspace(0, n - 1, m))``.

    Parameters
    ----------
    n : int
        Frames in the video (at least 1).
    m : int
        Frames wanted (at least 1).

    Returns
    -------
    np.ndarray
        (m,) int64, non-decreasing; indices repeat when n < m.
    """
    if n < 1 or m < 1:
        raise ValueError(f"frame_indices needs n >= 1 and m >= 1, got n={n}, m={m}")
    return np.round(np.linspace(0, n - 1, m)).astype(np.int64)


def silence_segments(m: int, seconds: float, sampling_rate: int = AUDIO_RATE) -> list[np.ndarray]:
    """m zero segments as long as the segments of an audio track lasting ``seconds`` would be.

    Parameters
    ----------
    m : int
        Number of segments.
    seconds : float
        Duration to cover.
    sampling_rate : int
        Samples per second.

    Returns
    -------
    list of np.ndarray
        m float32 zero arrays of ``max(1, round(seconds * sampling_rate / m))`` samples.
    """
    length = max(1, round(seconds * sampling_rate / m))
    return [np.zeros(length, dtype=np.float32) for _ in range(m)]


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise VideoError(f"{path}: cannot open as a video file ({_one_line(exc)})") from exc


def _count_packets(path: Path, notes: list[str]) -> tuple[int, float]:
    """First pass: count the video packets (frames) and read the stream's duration."""
    with _open(path) as container:
        if not container.streams.video:
            raise VideoError(f"{path}: no video stream")
        stream = container.streams.video[0]
        if stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            seconds = container.duration / 1_000_000
        else:
            seconds = 0.0
        count = 0
        try:
            for packet in container.demux(stream):
                if packet.size:
                    count += 1
        except (av.FFmpegError, OSError) as exc:
            notes.append(f"demuxing stopped after {count} video packets ({_one_line(exc, 80)})")
    if count == 0:
        raise VideoError(f"{path}: video stream has zero frames")
    if seconds <= 0:
        rate = float(stream.average_rate) if stream.average_rate else 25.0
        seconds = count / rate
    return count, seconds


def _rgb(frame: av.VideoFrame, size: int) -> np.ndarray:
    return frame.reformat(width=size, height=size, format="rgb24").to_ndarray()


def _decode_frames(path: Path, targets: np.ndarray, size: int, notes: list[str]) -> tuple[np.ndarray, int]:
    """Second pass: decode up to the last target index, keeping the targeted frames resized to size×size."""
    wanted = {int(index) for index in targets}
    last = int(targets[-1])
    kept: dict[int, np.ndarray] = {}
    decoded = 0
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        previous: av.VideoFrame | None = None
        try:
            for frame in container.decode(stream):
                index = decoded
                decoded += 1
                previous = frame
                if index in wanted:
                    kept[index] = _rgb(frame, size)
                if index >= last:
                    break
        except (av.FFmpegError, OSError, ValueError) as exc:
            notes.append(f"video decoding stopped after {decoded} frames ({_one_line(exc, 80)})")
        if previous is None:
            raise VideoError(f"{path}: no video frame could be decoded")
        if decoded <= last:
            notes.append(
                f"only {decoded} of {last + 1} counted frames decoded: the last decoded frame stands in for the rest"
            )
            if decoded - 1 not in kept:
                kept[decoded - 1] = _rgb(previous, size)
    frames = np.empty((len(targets), size, size, 3), dtype=np.uint8)
    available = sorted(kept)
    for row, index in enumerate(targets):
        # A target past the last decoded frame takes the nearest decoded target at or before it.
        nearest = available[int(np.searchsorted(available, int(index), side="right")) - 1]
        frames[row] = kept[nearest]
    return frames, decoded


def _decode_audio(path: Path, m: int, notes: list[str]) -> list[np.ndarray] | None:
    """The first audio track, 16 kHz mono float32, in m equal consecutive segments; None without audio."""
    with _open(path) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                frame.pts = None  # let the resampler count samples itself: gaps in pts would insert silence
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except (av.FFmpegError, OSError, ValueError) as exc:
            seconds = sum(len(c) for c in chunks) / AUDIO_RATE
            notes.append(f"audio decoding stopped at {seconds:.2f} s ({_one_line(exc, 80)})")
    if not chunks or not sum(len(c) for c in chunks):
        notes.append("audio track has no decodable sample")
        return None
    wave = np.concatenate(chunks).astype(np.float32, copy=False)
    bounds = np.round(np.linspace(0, len(wave), m + 1)).astype(np.int64)
    return [wave[bounds[i] : bounds[i + 1]] for i in range(m)]


def decode_video(path: str | os.PathLike, frames: int = 25, size: int = 224, audio: bool = True) -> DecodedVideo:
    """Decode m frames and m audio segments of one video.

    Parameters
    ----------
    path : path
        The video file (any container and codec FFmpeg reads).
    frames : int
        m, frames (and audio segments) per video.
    size : int
        Side of the square RGB frames (the CLIP model's ``image_size``).
    audio : bool
        Decode the audio track too.

    Returns
    -------
    DecodedVideo

    Raises
    ------
    VideoError
        The file cannot be opened, has no video stream, or no frame decodes.
    """
    video_path = Path(path)
    if frames < 1:
        raise SettingsError(f"frames must be at least 1, got {frames}")
    if not video_path.is_file():
        raise VideoError(f"{video_path}: video file not found")
    notes: list[str] = []
    count, seconds = _count_packets(video_path, notes)
    targets = frame_indices(count, frames)
    if count < frames:
        notes.append(f"short video: {count} frames < {frames}, frames repeated")
    sampled, decoded = _decode_frames(video_path, targets, size, notes)
    segments = _decode_audio(video_path, frames, notes) if audio else None
    logger.debug("%s: %d frames counted, %d decoded, audio %s", video_path, count, decoded, segments is not None)
    return DecodedVideo(
        path=video_path,
        frames=sampled,
        audio=segments,
        frame_count=count,
        decoded_frames=decoded,
        seconds=seconds,
        notes=notes,
    )
