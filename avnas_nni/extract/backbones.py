"""The two frozen backbones of the paper's features: CLIP ViT-L/14-336 for frames, AST for audio segments.

Both load with ``from_pretrained(path, local_files_only=True)`` from a local directory only; nothing is
fetched from a hub. Get the checkpoints once on a machine with network access, e.g.::

    huggingface-cli download openai/clip-vit-large-patch14-336 --local-dir models/clip-vit-large-patch14-336
    huggingface-cli download MIT/ast-finetuned-audioset-10-10-0.4593 --local-dir models/ast-audioset

(or ``from_pretrained(name).save_pretrained(dir)`` for the model and its processor / feature extractor).

* :class:`ClipVisualEncoder` — ``CLIPVisionModelWithProjection`` plus the CLIP image processor (the PIL
  backend when transformers has it, so torchvision is never needed); one ``image_embeds`` vector per frame
  (768-d for ViT-L/14-336). A full ``CLIPModel`` checkpoint (text + vision, as OpenAI's) loads as is: its
  vision config and projection width are taken from the checkpoint's config.
* :class:`AstAudioEncoder` — ``ASTModel`` plus ``ASTFeatureExtractor`` (its numpy filter-bank path; no
  torchaudio); one ``pooler_output`` vector per segment (768-d). Segments shorter than one 25 ms window
  (400 samples at 16 kHz) are zero-padded to it.

Inference runs in batches under :func:`torch.inference_mode` on ``cpu`` or ``cuda``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avnas_nni.errors import AVNASError

__all__ = ["AST_CHECKPOINT", "CLIP_CHECKPOINT", "AstAudioEncoder", "ClipVisualEncoder", "resolve_device"]

logger = logging.getLogger(__name__)

#: The paper's visual backbone (hub name), saved into a local directory before use.
CLIP_CHECKPOINT = "openai/clip-vit-large-patch14-336"
#: The paper's audio backbone (hub name), saved into a local directory before use.
AST_CHECKPOINT = "MIT/ast-finetuned-audioset-10-10-0.4593"
#: Shortest audio segment handed to AST: one 25 ms analysis window at 16 kHz.
MIN_AUDIO_SAMPLES = 400


def _one_line(text: object, limit: int = 200) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def resolve_device(device: str | torch.device) -> torch.device:
    """``cpu`` or ``cuda`` (``cuda`` must be available).

    Raises
    ------
    AVNASError
        ``cuda`` asked for on a machine without CUDA, or an unknown device string.
    """
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise AVNASError(f"unknown device {device!r}: expected cpu or cuda") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise AVNASError("device 'cuda' asked for, but CUDA is not available here (torch sees no GPU)")
    return resolved


def _download_hint(what: str, checkpoint: str, path: Path) -> str:
    return (
        f"download {checkpoint} into it first: huggingface-cli download {checkpoint} --local-dir {path} "
        f"(or from_pretrained('{checkpoint}').save_pretrained('{path}') for the model and its {what})"
    )


def _check_dir(path: str | os.PathLike, option: str, what: str, checkpoint: str) -> Path:
    directory = Path(path).expanduser()
    if not directory.is_dir():
        hint = _download_hint(what, checkpoint, directory)
        raise AVNASError(f"{option} {directory}: model directory not found; {hint}")
    if not (directory / "config.json").is_file():
        raise AVNASError(
            f"{option} {directory}: no config.json, not a saved transformers model; "
            f"{_download_hint(what, checkpoint, directory)}"
        )
    return directory


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports (the unused text tower, the classifier head) and progress bars."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _load(option: str, directory: Path, what: str, checkpoint: str, loader: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        with _quiet_transformers():
            return loader(*args, **kwargs)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, AttributeError) as exc:
        raise AVNASError(
            f"{option} {directory}: cannot load the {what} ({_one_line(exc, 160)}); "
            f"{_download_hint(what, checkpoint, directory)}"
        ) from exc


class ClipVisualEncoder:
    """CLIP image embeddings of RGB frames.

    Parameters
    ----------
    path : path
        Local directory of a saved CLIP model (``CLIPModel`` or ``CLIPVisionModelWithProjection``) with its
        image processor config (``preprocessor_config.json``).
    device : str
        ``cpu`` or ``cuda``.
    batch_size : int
        Frames per forward pass.

    Attributes
    ----------
    dim : int
        Embedding width d (``projection_dim``: 768 for ViT-L/14-336).
    image_size : int
        Side of the square input image (336 for ViT-L/14-336): frames are decoded at this size.

    Raises
    ------
    AVNASError
        The directory is missing or does not hold a loadable CLIP model; the message says what to download.
    """

    def __init__(self, path: str | os.PathLike, device: str = "cpu", batch_size: int = 32) -> None:
        import transformers
        from transformers import AutoConfig, CLIPVisionModelWithProjection

        option = "--clip"
        self.path = _check_dir(path, option, "image processor", CLIP_CHECKPOINT)
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        config = _load(option, self.path, "model config", CLIP_CHECKPOINT, AutoConfig.from_pretrained,
                       self.path, local_files_only=True)
        if getattr(config, "model_type", None) == "clip":
            # A full CLIPModel checkpoint: the projection width lives in the outer config.
            vision_config = config.vision_config
            vision_config.projection_dim = config.projection_dim
        elif getattr(config, "model_type", None) == "clip_vision_model":
            vision_config = config
        else:
            raise AVNASError(
                f"{option} {self.path}: holds a '{getattr(config, 'model_type', '?')}' model, expected CLIP; "
                f"{_download_hint('image processor', CLIP_CHECKPOINT, self.path)}"
            )
        self.model = _load(option, self.path, "CLIP vision model", CLIP_CHECKPOINT,
                           CLIPVisionModelWithProjection.from_pretrained, self.path, config=vision_config,
                           local_files_only=True).to(self.device).eval()
        processor_class = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
        self.processor = _load(option, self.path, "image processor", CLIP_CHECKPOINT,
                               processor_class.from_pretrained, self.path, local_files_only=True)
        self.dim = int(vision_config.projection_dim)
        self.image_size = int(vision_config.image_size)
        logger.info("CLIP vision model from %s: image %d px, d = %d, on %s", self.path, self.image_size, self.dim,
                    self.device)

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """Embed RGB frames.

        Parameters
        ----------
        frames : np.ndarray
            (k, H, W, 3) uint8 RGB frames (H = W = :attr:`image_size` as decoded for this encoder).

        Returns
        -------
        np.ndarray
            (k, d) float32 ``image_embeds``.
        """
        out = np.empty((len(frames), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(frames), self.batch_size):
                batch = list(frames[start : start + self.batch_size])
                pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"].to(self.device)
                embeds = self.model(pixel_values=pixels).image_embeds
                out[start : start + len(batch)] = embeds.float().cpu().numpy()
        return out


class AstAudioEncoder:
    """AST embeddings of 16 kHz mono audio segments.

    Parameters
    ----------
    path : path
        Local directory of a saved AST model (``ASTModel`` or ``ASTForAudioClassification``) with its
        feature extractor config (``preprocessor_config.json``).
    device : str
        ``cpu`` or ``cuda``.
    batch_size : int
        Segments per forward pass.

    Attributes
    ----------
    dim : int
        Embedding width d (``hidden_size``: 768).
    sampling_rate : int
        The rate the feature extractor expects (16 kHz).

    Raises
    ------
    AVNASError
        The directory is missing or does not hold a loadable AST model; the message says what to download.
    """

    def __init__(self, path: str | os.PathLike, device: str = "cpu", batch_size: int = 32) -> None:
        from transformers import ASTFeatureExtractor, ASTModel

        option = "--ast"
        self.path = _check_dir(path, option, "feature extractor", AST_CHECKPOINT)
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        self.model = _load(option, self.path, "AST model", AST_CHECKPOINT, ASTModel.from_pretrained, self.path,
                           local_files_only=True).to(self.device).eval()
        self.extractor = _load(option, self.path, "feature extractor", AST_CHECKPOINT,
                               ASTFeatureExtractor.from_pretrained, self.path, local_files_only=True)
        self.dim = int(self.model.config.hidden_size)
        self.sampling_rate = int(self.extractor.sampling_rate)
        logger.info("AST model from %s: d = %d, on %s", self.path, self.dim, self.device)

    def encode(self, segments: Sequence[np.ndarray]) -> np.ndarray:
        """Embed audio segments.

        Parameters
        ----------
        segments : sequence of np.ndarray
            1-D float32 mono segments at :attr:`sampling_rate`; each shorter than 400 samples is zero-padded.

        Returns
        -------
        np.ndarray
            (k, d) float32 ``pooler_output``.
        """
        waves = [
            np.pad(np.asarray(s, dtype=np.float32), (0, max(0, MIN_AUDIO_SAMPLES - len(s)))) for s in segments
        ]
        out = np.empty((len(waves), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(waves), self.batch_size):
                batch = waves[start : start + self.batch_size]
                inputs = self.extractor(batch, sampling_rate=self.sampling_rate, return_tensors="pt")
                values = inputs["input_values"].to(self.device)
                out[start : start + len(batch)] = self.model(input_values=values).pooler_output.float().cpu().numpy()
        return out
