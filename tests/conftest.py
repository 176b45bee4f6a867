"""Shared fixtures: a private cache for the embedded dataset and a tiny dataset in the paper's layout."""

from __future__ import annotations

import warnings

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
