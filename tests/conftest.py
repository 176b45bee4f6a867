"""Shared fixtures: a private cache for the embedded dataset and two tiny datasets in the paper's layout (one whose
visual frames carry the class without labels, for the label-free methods)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

# Two xdist workers share the 2 cores: more torch threads than cores makes small ops ~1000× slower.
torch.set_num_threads(1)
warnings.filterwarnings("ignore", message=".*is found to be not a nn.Module.*")


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Never write the embedded dataset into the user's cache during tests."""
    mp = pytest.MonkeyPatch()
    mp.setenv("AVNAS_CACHE", str(tmp_path_factory.mktemp("avnas-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> str:
    """A tiny synthetic dataset (6 classes, 48/24/24 videos, m = 12, d = 12): the config path."""
    from avnas_nni.data import write_synthetic

    return str(write_synthetic(tmp_path_factory.mktemp("tiny"), num_class=6, n_train=48, n_val=24, n_test=24,
                               m=12, d=12, seed=0))


def write_clustered(root: Path, seed: int, num_class: int = 6, sizes: tuple[int, int, int] = (48, 24, 24),
                     m: int = 12, d: int = 12) -> str:
    """A tiny set in the paper's layout whose *visual frames* carry the class without labels: each class is three
    events (random prototypes) one after another at random cut points, each video jitters them (std 0.3) and adds
    per-frame noise (std 1). ``tiny_data`` cannot serve here: its visual stream confuses each class with its
    visual twin and shares event vectors between classes, and LSH or k-means of its mean-pooled frames sit at
    chance, so a label-free method has nothing to find. Audio is noise (MCMSH, ConMH, BTH and SSTH never read it)."""
    rng = np.random.default_rng(seed)
    prototypes = rng.standard_normal((num_class, 3, d))
    root.mkdir(parents=True)
    with h5py.File(root / "visual.h5", "w") as visual, h5py.File(root / "audio.h5", "w") as audio:
        for split, count in zip(("train", "val", "test"), sizes, strict=True):
            lines = []
            for i in range(count):
                label = i % num_class
                events = prototypes[label] + 0.3 * rng.standard_normal((3, d))
                cuts = np.sort(rng.choice(np.arange(1, m), 2, replace=False))
                frames = events[np.searchsorted(cuts, np.arange(m), side="right")] + rng.standard_normal((m, d))
                name = f"{split}{i:03d}"
                visual.create_group(name).create_dataset("vectors", data=frames.astype(np.float32))
                audio.create_group(name).create_dataset("vectors", data=rng.standard_normal((m, d)).astype(np.float32))
                lines.append(f"{name},{m},{label}")
            (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    config = {"Image": "visual.h5", "Audio": "audio.h5", "num_class": num_class, "train_list": "train.txt",
              "val_list": "val.txt", "test_list": "test.txt", "retrieval_list": "train.txt",
              "list_format": "activitynet"}
    (root / "config.json").write_text(json.dumps(config))
    return str(root / "config.json")


@pytest.fixture(scope="session")
def clustered_data(tmp_path_factory) -> str:
    """``write_clustered``'s set (6 classes, 48/24/24 videos, m = 12, d = 12, data seed 0): the config path."""
    return write_clustered(tmp_path_factory.mktemp("clustered") / "data", seed=0)
