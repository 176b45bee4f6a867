"""DKPH (avnas_nni.methods.dkph): network and loss, label-free training, a run that beats chance, its Table 2 row."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from test_methods import (
    _assert_finite_and_falling,
    _assert_label_free,
    _assert_rebuilt_and_length_checked,
    _assert_reloaded_without_audio,
    _assert_unsupervised_row,
    _assert_unsupervised_run,
    _module_steps,
    _schedule_rates,
    _settings,
    _steps,
    _untrained_and_trained,
)

from avnas_nni.data import read_split_list
from avnas_nni.evaluator import load_split
from avnas_nni.methods import DKPH, MethodModule

# The paper-size temporal layer (width 256, dropout 0.1) on d = 12 frames: a 32-wide one without dropout keeps the
# tiny runs fast; k = 2 nearest videos of a batch of 16 (6 classes: about 2 other videos of a class per batch).
TINY_DKPH = {"hidden": 32, "dropout": 0.0, "neighbours": 2}

#: Per-frame noise (std per feature) of the class-structured fixture, against unit class prototypes.
POOLED_CLASS_NOISE = 0.9


def _pooled_class_copy(data: str, root: Path, seed: int = 0) -> str:
    """``data`` (tiny_data) with new visual frames: frame t of a video of classes C is the mean unit prototype of C
    (6 random directions in d = 12) plus independent Gaussian noise of std 0.9 per feature (norm ≈ 3.1).

    Why: tiny_data's visual frames hold no label-free class structure (a shared "scene" component dominates the
    mean-pooled frames: LSH and k-means of them sit at chance), so no unsupervised method can find its classes.
    Here the class is plain once the m = 12 frames are averaged (pooled noise norm ≈ 0.9 against prototypes ≈ 1.4
    apart) but hidden frame by frame, so a random network — whose hash layer reads every frame with its own
    weights — hashes near chance, and a method that learns from the pooled frames' similarity, as DKPH's
    semantic knowledge does, can find it (measured val mAP@100: 16-bit LSH of the pooled frames 0.49, of the
    concatenated frames 0.33; the untrained DKPH 0.27-0.35). Labels, lists, audio and video ids are tiny_data's;
    labels are never read by the training.
    """
    source = json.loads(Path(data).read_text())
    folder = Path(data).parent
    root.mkdir()
    for name in {source[key] for key in ("Audio", "train_list", "val_list", "test_list", "retrieval_list")}:
        (root / name).write_bytes((folder / name).read_bytes())
    with h5py.File(folder / source["Image"], "r") as old:
        length, dim = old[next(iter(old))]["vectors"].shape
    rng = np.random.default_rng(seed)
    prototypes = rng.standard_normal((source["num_class"], dim))
    prototypes /= np.linalg.norm(prototypes, axis=1, keepdims=True)
    with h5py.File(root / source["Image"], "w") as new:
        for key in ("train_list", "val_list", "test_list"):
            split = read_split_list(folder / source[key], source["num_class"])
            for video, labels in zip(split.ids, split.labels, strict=True):
                centre = prototypes[np.flatnonzero(labels)].mean(0)
                frames = centre + POOLED_CLASS_NOISE * rng.standard_normal((length, dim))
                new.create_group(video).create_dataset("vectors", data=frames.astype(np.float32))
    (root / "config.json").write_text(json.dumps(source))
    return str(root / "config.json")


@pytest.fixture(scope="module")
def pooled_class_data(tiny_data, tmp_path_factory) -> str:
    return _pooled_class_copy(tiny_data, tmp_path_factory.mktemp("dkph-data") / "pooled")


def _dkph_settings(data: str, **extra):
    """16 bits, 10 epochs, batch 16, Adam lr 1e-2 (30 steps at the default 1e-3 learn less: measured val mAP gain
    +0.04 to +0.11 there, seeds 1-8), seed 5."""
    return _settings(data, method="dkph", bits=16, seed=5, batch_size=16, finetune_lr=1e-2,
                     extra={"method": TINY_DKPH | extra})


@pytest.fixture(scope="module")
def dkph_runs(pooled_class_data, tmp_path_factory):
    """The same DKPH network untrained and trained for 10 epochs on the class-structured copy of tiny_data."""
    return _untrained_and_trained(_dkph_settings(pooled_class_data), tmp_path_factory.mktemp("dkph"))


def test_dkph_maps_visual_frames_to_binary_codes():
    torch.manual_seed(0)
    model = DKPH(dim=12, length=12, bits=8, **TINY_DKPH).eval()
    visual = torch.randn(5, 12, 12)
    codes = model(visual, torch.randn(5, 12, 12))
    assert codes.shape == (5, 8) and set(codes.unique().tolist()) == {-1.0, 1.0}  # the hash stream is binary
    assert torch.equal(model(visual, torch.randn(5, 12, 12)), codes)  # the audio input is ignored
    assert not torch.equal(codes[0], codes[1])
    assert not torch.equal(model(visual.flip(1), visual), codes)  # the hash layer reads each frame's position
    hidden = model.hidden_states(visual)
    assert hidden.shape == (5, 12, 32) and torch.equal(model.hash_codes(hidden), codes)
    rebuilt = model.reconstruct(codes, hidden)
    assert rebuilt.shape == (5, 12, 12)
    # The two streams: the decoder reads the code plus each frame's temporal vector.
    assert torch.allclose(rebuilt, model.decoder(codes[:, None] + model.temporal(hidden)))
    _assert_rebuilt_and_length_checked(model, visual, visual, codes)
    for bad in ({"hidden": 0}, {"heads": 5}, {"dropout": 1.0}, {"mask_ratio": 0.0}, {"neighbours": 0},
                {"similarity_weight": -1.0}, {"straight_through": "none"}, {"lr_step_epochs": 0}, {"lr_gamma": 0.0}):
        with pytest.raises(ValueError, match="DKPH: "):
            DKPH(dim=12, length=12, bits=8, **(TINY_DKPH | bad))
    with pytest.raises(ValueError, match="videos \\(B, m, d\\)"):
        model(visual[:, None], visual[:, None])
    with pytest.raises(ValueError, match="videos \\(B, m, d\\)"):
        model.training_loss(visual[:, None], visual[:, None])
    # The paper's size: 3.58M at DKPH's 4096-d VGG frames, m = 25, q = 64 (AV-NAS paper Table 2: 4M), 2.53M of it
    # without the read-out of the knowledge term; 1.66M at the AV-NAS data's 768-d CLIP frames.
    paper = DKPH(dim=4096)
    assert round(sum(p.numel() for p in paper.parameters()) / 1e6) == 4
    assert sum(p.numel() for name, p in paper.named_parameters() if not name.startswith("readout")) == 2_530_944
    assert sum(p.numel() for p in DKPH().parameters()) == 1_660_032


def test_dkph_masks_frames_and_draws_its_knowledge_from_the_batch():
    torch.manual_seed(0)
    model = DKPH(dim=12, length=12, bits=8, **TINY_DKPH)
    visual = torch.randn(64, 12, 12) + 0.1
    masked = model.mask_frames(visual)
    changed = (masked != visual).any(2)
    zeroed = (masked == 0).all(2)
    assert 0.08 < changed.float().mean() < 0.2 and zeroed.sum() > 0.6 * changed.sum()  # ρ = 0.15, 80 % zeroed
    swapped = changed & ~zeroed  # the 10 % swapped for another frame of the batch
    frames = visual.reshape(-1, 12)
    assert swapped.any() and all((frames == row).all(1).any() for row in masked[swapped])
    # Knowledge: the partner is one of the k = 2 nearest videos by pooled-frame cosine (similar) or one of the
    # middle half of the ranking (ranks 15-47 of the 63 others); the anchor is the mean of the video and its k nearest.
    partner, similar, anchors = model.knowledge(visual)
    pooled = torch.nn.functional.normalize(visual.mean(1), dim=1)
    similarity = (pooled @ pooled.T).fill_diagonal_(float("-inf"))
    rank = (similarity > similarity.gather(1, partner[:, None])).sum(1)  # 0: the nearest other video
    assert similar.any() and (~similar).any() and (partner != torch.arange(64)).all()
    assert (rank[similar] < 2).all() and (rank[~similar] >= 15).all() and (rank[~similar] < 48).all()
    nearest = similarity.topk(2, dim=1).indices
    assert torch.allclose(anchors, (visual.mean(1) + visual.mean(1)[nearest].sum(1)) / 3, atol=1e-6)
    alone = model.knowledge(visual[:1])  # one video: its own similar partner, its own anchor
    assert alone.partner.tolist() == [0] and alone.similar.tolist() == [True]
    assert torch.equal(alone.anchors, visual[:1].mean(1))
    assert torch.isfinite(model.training_loss(visual[:1], visual[:1]))


def test_dkph_loss_is_finite_and_falls(tiny_data):
    visual, audio, _ = load_split(tiny_data, "train")
    torch.manual_seed(0)
    model = DKPH(dim=12, length=12, bits=8, **TINY_DKPH)

    def loss_of(_: int) -> torch.Tensor:
        torch.manual_seed(1)  # the same masks and partners each step
        return model.training_loss(visual[:16], audio[:16])

    # 12 Adam steps at lr 1e-3 on the same 16 videos (measured 1.554 → 0.749): falling at each of the first 8
    # steps, and at 10 of the 11 in all — the codes are exactly ±1, so a bit that flips sign moves the loss in a jump.
    losses = _steps(torch.optim.Adam(model.parameters(), lr=1e-3), loss_of, 12)
    _assert_finite_and_falling(losses[:8])
    assert sum(b < a for a, b in zip(losses, losses[1:], strict=False)) >= 9, losses
    assert losses[-1] < 0.6 * losses[0] and 0.5 < losses[0] < 5  # MSEs of unit-scale features, ±1 code products
    full = loss_of(0).item()
    model.similarity_weight = model.knowledge_weight = 0.0  # reconstruction alone is lower: the others add ≥ 0
    assert 0 < loss_of(0).item() < full


def test_dkph_gradients_reach_both_streams():
    torch.manual_seed(0)
    model = DKPH(dim=12, length=12, bits=8, **TINY_DKPH)
    visual = torch.randn(8, 12, 12, requires_grad=True)
    model.training_loss(visual, visual).backward()
    for layer in (model.embed, model.blocks[0].linear1, model.hash, model.temporal, model.decoder, model.readout):
        assert layer.weight.grad.abs().sum() > 0, layer
    assert (visual.grad.abs().sum((0, 2)) > 0).all()  # every frame position gets a gradient
    # The binarisation: sign forward; backward the identity (default) or the repository's clamped gradient.
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], requires_grad=True)
    for rule, gradient in (("identity", [1, 1, 1, 1, 1]), ("clamped", [0, 1, 1, 1, 0])):
        x.grad = None
        codes = DKPH(dim=12, length=12, bits=8, straight_through=rule, **TINY_DKPH)._binarise(x)
        codes.sum().backward()
        assert codes.tolist() == [-1, -1, -1, 1, 1] and x.grad.tolist() == gradient, rule


def test_dkph_trains_without_labels(tiny_data, tmp_path, monkeypatch):
    def make() -> DKPH:
        return DKPH(dim=12, length=12, bits=8, **TINY_DKPH)

    _assert_label_free(lambda data: _module_steps(data, make), tiny_data, tmp_path, monkeypatch)


def test_a_dkph_run_beats_chance_on_a_tiny_dataset(dkph_runs, pooled_class_data):
    untrained, trained, data = _assert_unsupervised_run(dkph_runs, "dkph", "ECCV 2022")
    assert isinstance(trained, DKPH) and data == pooled_class_data
    _, before, after = dkph_runs
    # The requirement: val mAP@100 well above the same network untrained, whose codes sit at chance
    # (measured, seeds 1-8: untrained 0.27-0.35, trained 0.46-0.54, gain +0.15 to +0.26) ...
    assert after["val_mAP@100"] > before["val_mAP@100"] + 0.1, (before["val_mAP@100"], after["val_mAP@100"])
    # ... and on the test split, which chose nothing (the run keeps its best val epoch): measured untrained
    # 0.28-0.33, trained 0.47-0.61, gain +0.16 to +0.32.
    assert after["test_mAP@100"] > before["test_mAP@100"] + 0.1, (before["test_mAP@100"], after["test_mAP@100"])


def test_dkph_finds_the_classes_through_its_knowledge_terms(dkph_runs, pooled_class_data, tmp_path):
    """The same run with the semantic-knowledge terms off (reconstruction alone) finds less: measured test mAP,
    seeds 1-8: 0.33-0.45 without them, 0.47-0.61 with them, per seed +0.046 to +0.24 (seed 5: +0.046)."""
    _, _, full = dkph_runs
    settings = _dkph_settings(pooled_class_data, similarity_weight=0.0, knowledge_weight=0.0)
    _, _, plain = _untrained_and_trained(settings, tmp_path)
    assert full["test_mAP@100"] > plain["test_mAP@100"] + 0.02, (plain["test_mAP@100"], full["test_mAP@100"])


def test_load_run_model_rebuilds_dkph_with_its_weights(dkph_runs):
    _assert_reloaded_without_audio(dkph_runs, DKPH)


def test_dkph_schedule_decays_the_learning_rate_to_its_floor(tiny_data):
    rates = _schedule_rates(tiny_data, DKPH(dim=12, length=12, bits=8, **TINY_DKPH), 3e-4, 300)
    assert rates[0] == rates[19] == 3e-4 and rates[20] == pytest.approx(2.7e-4) and rates[40] == pytest.approx(2.43e-4)
    assert rates[-1] == pytest.approx(1e-4)  # 3e-4 · 0.9^11 < 1e-4: the floor
    # a rate under the floor is kept, not raised to it
    assert _schedule_rates(tiny_data, DKPH(dim=12, length=12, bits=8, **TINY_DKPH), 5e-5, 2) == [5e-5] * 2
    module = MethodModule(tiny_data, lr=3e-4)
    module.set_model(DKPH(dim=12, length=12, bits=8, **(TINY_DKPH | {"lr_step_epochs": None})))
    assert isinstance(module.configure_optimizers(), torch.optim.Adam)


def test_dkph_is_registered_with_its_table2_row():
    # Paper Table 2, line 5; the repository's settings (Adam lr 3e-4, ε 1e-8, batch 256, 50 epochs).
    paper = _assert_unsupervised_row(DKPH, "DKPH", {32: (0.1528, 0.3256), 64: (0.2283, 0.3731)})
    assert (paper.finetune_lr, paper.finetune_eps, paper.batch_size, paper.finetune_epochs) == (3e-4, 1e-8, 256, 50)
