"""Feature extraction from video files: PyAV decoding, CLIP (frames) and AST (audio) embeddings.

``avnas extract VIDEOS... --out DIR --clip PATH --ast PATH`` writes a dataset in the layout
:mod:`avnas_nni.data` reads (``config.json``, ``visual.h5``, ``audio.h5``, ``train/val/test.txt``) plus
``extract_report.json``.

* :mod:`avnas_nni.extract.video` — ``decode_video(path, frames, size)``: m uniformly sampled RGB frames and m
  aligned 16 kHz mono audio segments (PyAV only).
* :mod:`avnas_nni.extract.backbones` — ``ClipVisualEncoder``, ``AstAudioEncoder``: frozen transformers models
  loaded from local directories.
* :mod:`avnas_nni.extract.features` — ``extract_features(videos, out, ...)`` (the whole run: ids, labels,
  splits, resuming, the layout) and ``featurize_video(path, visual_encoder, audio_encoder)`` (one video).
"""

from avnas_nni.extract.backbones import (
    AST_CHECKPOINT,
    CLIP_CHECKPOINT,
    AstAudioEncoder,
    ClipVisualEncoder,
    resolve_device,
)
from avnas_nni.extract.features import (
    MISSING_AUDIO,
    VIDEO_EXTENSIONS,
    ExtractReport,
    VideoFeatures,
    VideoSource,
    assign_splits,
    discover_videos,
    extract_features,
    featurize,
    featurize_video,
    read_labels_csv,
    video_id,
)
from avnas_nni.extract.video import AUDIO_RATE, DecodedVideo, decode_video, frame_indices, silence_segments

__all__ = [
    "AST_CHECKPOINT",
    "AUDIO_RATE",
    "CLIP_CHECKPOINT",
    "MISSING_AUDIO",
    "VIDEO_EXTENSIONS",
    "AstAudioEncoder",
    "ClipVisualEncoder",
    "DecodedVideo",
    "ExtractReport",
    "VideoFeatures",
    "VideoSource",
    "assign_splits",
    "decode_video",
    "discover_videos",
    "extract_features",
    "featurize",
    "featurize_video",
    "frame_indices",
    "read_labels_csv",
    "resolve_device",
    "silence_segments",
    "video_id",
]
