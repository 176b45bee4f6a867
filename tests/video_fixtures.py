"""Real video clips written with PyAV and tiny random CLIP / AST checkpoints, for the extraction tests."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np

__all__ = ["D", "write_clip", "save_tiny_models"]

D = 16  # the tiny models' feature width (CLIP projection_dim = AST hidden_size)


def write_clip(path: Path, frames: int = 30, fps: int = 10, audio: bool = True, codec: str = "mpeg4",
               seed: int = 0) -> Path:
    """A small real video (64×48) written with PyAV: coloured frames, and a 440 Hz tone as AAC audio."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound = out.add_stream("aac", rate=16000, layout="mono") if audio else None
        for i in range(frames):
            image = np.full((48, 64, 3), (i * 8) % 256, np.uint8)
            image[:24] = rng.integers(0, 255, 3, dtype=np.uint8)
            out.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(video.encode())
        if sound is not None:
            n = 16000 * frames // fps
            wave = (0.3 * np.sin(2 * np.pi * (440 + 40 * seed) * np.arange(n) / 16000)).astype(np.float32)
            for start in range(0, n, 1024):
                frame = av.AudioFrame.from_ndarray(wave[None, start : start + 1024], format="flt", layout="mono")
                frame.sample_rate, frame.pts = 16000, start
                out.mux(sound.encode(frame))
            out.mux(sound.encode())
    return path


def save_tiny_models(root: Path) -> dict[str, Path]:
    """Tiny random CLIP (a full CLIPModel checkpoint, like OpenAI's) and AST (with a classifier head, like
    MIT's) saved with their processors under ``root``; both give 16-d features."""
    import torch
    from transformers import (
        ASTConfig,
        ASTFeatureExtractor,
        ASTForAudioClassification,
        CLIPConfig,
        CLIPModel,
    )

    torch.manual_seed(0)
    vision = dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2)
    text = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=D)).save_pretrained(root / "clip")
    # The image processor config in the form OpenAI's checkpoint ships it (sizes as plain ints).
    (root / "clip" / "preprocessor_config.json").write_text(json.dumps({
        "crop_size": 32, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 32}))
    ast = ASTConfig(hidden_size=D, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, num_mel_bins=16,
                    max_length=64, patch_size=4, frequency_stride=4, time_stride=4)
    ASTForAudioClassification(ast).save_pretrained(root / "ast")
    ASTFeatureExtractor(num_mel_bins=16, max_length=64).save_pretrained(root / "ast")
    return {"clip": root / "clip", "ast": root / "ast"}
