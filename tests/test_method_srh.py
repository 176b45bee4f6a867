"""SRH (avnas_nni.methods.srh): its network, its supervised pairwise loss, its runs and its Table 2 row."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from test_methods import (
    _assert_finite_and_falling,
    _assert_rebuilt_and_length_checked,
    _assert_reloaded_without_audio,
    _label_shuffled_copy,
    _module_steps,
    _settings,
    _steps,
    _untrained_and_trained,
)

from avnas_nni.data import TripletSampler
from avnas_nni.evaluator import load_split
from avnas_nni.methods import METHODS, SRH
from avnas_nni.methods.srh import pairwise_likelihood_loss
from benchmarks import table2
from benchmarks.rows import ROWS

# The paper-size LSTM (256 wide) on d = 12 frames: 32 wide keeps the runs fast.
TINY_SRH = {"hidden": 32}


def _tiny(**kwargs) -> SRH:
    return SRH(dim=12, length=12, bits=8, **(TINY_SRH | kwargs))


@pytest.fixture(scope="module")
def srh_runs(tiny_data, tmp_path_factory):
    """The same SRH network untrained and trained for 10 epochs (16 bits; Adam lr 1e-2, ε 1e-8: from its start the
    pairwise loss is bilinear in near-zero codes, and 60 steps at lr 1e-3 barely move it on d = 12 frames —
    measured val mAP change −0.02 to +0.04 with ε 1e-3 or 1e-8, seeds 1-4)."""
    settings = _settings(tiny_data, method="srh", bits=16, seed=5, finetune_lr=1e-2, finetune_eps=1e-8,
                         extra={"method": TINY_SRH})
    return _untrained_and_trained(settings, tmp_path_factory.mktemp("srh"))


def test_srh_maps_visual_frames_to_codes_in_the_unit_interval():
    torch.manual_seed(0)
    model = _tiny().eval()
    visual = torch.randn(5, 12, 12)
    codes = model(visual, torch.randn(5, 12, 12))
    assert codes.shape == (5, 8) and codes.abs().max() < 1  # tanh: relaxed codes, sign gives the hash codes
    assert torch.equal(model(visual, torch.randn(5, 12, 12)), codes)  # the audio input is ignored
    assert not torch.allclose(codes[0], codes[1])
    assert not torch.allclose(model(visual.flip(1), visual), codes)  # the LSTM reads the frames in order
    states, _ = model.lstm(visual)  # the video's vector is the max over time of the LSTM's states
    assert torch.equal(model.video_vector(visual), states.max(dim=1).values)
    assert torch.equal(codes, torch.tanh(model.hash(states.max(dim=1).values)))
    _assert_rebuilt_and_length_checked(model, visual, visual, codes)
    with pytest.raises(ValueError, match="videos \\(B, m, d\\)"):
        model(visual[:, None], visual[:, None])
    for bad in ({"hidden": 0}, {"bits": 0}, {"dim": 2.5}, {"length": True}, {"quantisation_weight": -1.0},
                {"quantisation_weight": "0.1"}):
        with pytest.raises(ValueError, match="SRH: "):
            SRH(**({"dim": 12, "length": 12, "bits": 8} | TINY_SRH | bad))
    # The paper's size: 4.47M at SRH's 4096-d CNN frames, m = 25, q = 64 (AV-NAS paper Table 2: 4.5M).
    assert round(sum(p.numel() for p in SRH(dim=4096).parameters()) / 1e5) == 45
    assert sum(p.numel() for p in SRH().parameters()) == 1_067_072  # d = 768, the AV-NAS data's CLIP frames


def test_pairwise_likelihood_loss_is_the_negative_log_likelihood_of_the_rows_labels():
    torch.manual_seed(0)
    codes = torch.tanh(torch.randn(3, 5, 8))  # 3 rows: anchor, positive, 3 negatives
    similar, dissimilar = [], []
    for row in codes:
        for i in range(5):
            for j in range(i + 1, 5):
                theta = 0.5 * row[i] @ row[j]
                if (i, j) == (0, 1):  # -log σ(θ)
                    similar.append(-F.logsigmoid(theta))
                else:  # -log(1 − σ(θ))
                    dissimilar.append(-F.logsigmoid(-theta))
    expected = torch.stack(similar).mean() + torch.stack(dissimilar).mean()
    assert pairwise_likelihood_loss(codes).item() == pytest.approx(expected.item(), rel=1e-6)
    # Low when the positive shares the anchor's code and anchor and negatives take mutually orthogonal ones (every
    # pair but (anchor, positive) is labelled dissimilar, the negatives' pairs too); high with a negative's and the
    # positive's codes swapped.
    hadamard = torch.ones(1, 1)
    for _ in range(3):
        hadamard = torch.cat([torch.cat([hadamard, hadamard], 1), torch.cat([hadamard, -hadamard], 1)])  # 8 × 8
    anchor, first, second, third = hadamard[:4]
    ideal = torch.stack([anchor, anchor, first, second, third])[None]
    swapped = torch.stack([anchor, first, anchor, second, third])[None]
    assert pairwise_likelihood_loss(ideal) < pairwise_likelihood_loss(codes) < pairwise_likelihood_loss(swapped)
    with pytest.raises(ValueError, match="\\(B, 2 \\+ n0, q\\)"):
        pairwise_likelihood_loss(codes[:, :2])


def test_srh_loss_is_finite_and_falls(tiny_data):
    visual, audio, labels = load_split(tiny_data, "train")
    rows = torch.from_numpy(TripletSampler(labels, 4, 0).epoch_triplets(0)[:16])  # (16, 6): anchor, positive, 4 neg
    torch.manual_seed(0)
    model = _tiny()

    def loss_of(_: int) -> torch.Tensor:
        return model.training_loss(visual[rows], audio[rows])

    losses = _steps(torch.optim.Adam(model.parameters(), lr=1e-2), loss_of, 12)
    _assert_finite_and_falling(losses)
    # Near-zero codes at the start: each likelihood term ≈ ln 2, plus η · (|f| − 1)² ≈ 0.1.
    assert 1.3 < losses[0] < 1.6 and losses[-1] < 0.9 * losses[0], losses
    both = loss_of(0).item()
    model.quantisation_weight = 0.0  # the similarity term alone is lower: quantisation adds a positive term
    assert 0 < loss_of(0).item() < both
    loss_of(0).backward()
    assert model.lstm.weight_ih_l0.grad.abs().sum() > 0  # the gradient reaches the LSTM through the max-pooling
    with pytest.raises(ValueError, match="triplet rows"):
        model.training_loss(visual[:4], audio[:4])


def test_srh_trains_on_the_labels(tiny_data, tmp_path):
    """Supervised: the same steps on tiny_data with the training labels permuted give other triplets, other losses."""
    shuffled = _label_shuffled_copy(tiny_data, tmp_path / "shuffled")
    losses, weights = _module_steps(tiny_data, _tiny)
    shuffled_losses, shuffled_weights = _module_steps(shuffled, _tiny)
    assert np.isfinite(losses).all() and np.isfinite(shuffled_losses).all()
    assert losses != shuffled_losses
    assert not torch.equal(weights["hash.weight"], shuffled_weights["hash.weight"])


def test_a_srh_run_learns_the_classes(srh_runs):
    root, untrained, trained = srh_runs
    out = root / "trained"
    record = json.loads((out / "arch.json").read_text())
    assert record["method"] == "srh" and record["kwargs"]["hidden"] == 32
    assert "ACM Multimedia 2016" in record["citation"]
    assert trained["method"] == "srh" and trained["params"] == untrained["params"] > 0
    history = pd.read_csv(out / "history.csv")
    assert list(history["stage"]) == ["finetune"] * 10 and history["train_loss"].notna().all()
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    # Training beats the very same network untrained: val mAP@100 measured +0.09 to +0.20 (0.26-0.31 untrained,
    # 0.40-0.48 trained, seeds 1-8); test mAP rose on all 8 seeds (+0.01 to +0.14).
    assert trained["val_mAP@100"] > untrained["val_mAP@100"] + 0.05, (trained["val_mAP@100"], untrained["val_mAP@100"])
    assert trained["test_mAP@100"] > untrained["test_mAP@100"]
    assert trained["val_mAP@100"] == pytest.approx(history["val_mAP"].max(), abs=1e-6)  # best val epoch kept


def test_load_run_model_rebuilds_srh_with_its_weights(srh_runs):
    _assert_reloaded_without_audio(srh_runs, SRH)


def test_srh_is_registered_with_its_table2_row():
    assert METHODS["srh"] is SRH and SRH.supervised
    row = ROWS["SRH"]
    assert (row.table, row.command, row.group) == ("2", "method", "expert-hashing")
    assert row.settings == {"method": "srh", "finetune_eps": 1e-8}  # Adam ε: see the module's Settings
    assert row.paper == {32: (0.3205, 0.3699), 64: (0.4266, 0.4783)}  # paper Table 2, line 9
    paper = table2._settings(row, 64, 1, {**table2.BENCH_PROFILES["paper"], "profile": "paper"})
    assert (paper.finetune_lr, paper.finetune_eps, paper.batch_size, paper.finetune_epochs, paper.n_neg) == (
        1e-4, 1e-8, 128, 300, 4)
    assert paper.method == "srh" and paper.strategy == "fixed" and paper.extra == {}
    quick = table2._settings(row, 64, 1, {**table2.BENCH_PROFILES["bench-quick"], "profile": "bench-quick"})
    assert (quick.batch_size, quick.finetune_lr, quick.finetune_eps) == (32, 1e-3, 1e-8)
    # trained from scratch: the supernet + fine-tune epochs a searched row gets (equal budgets)
    bench = table2.BENCH_PROFILES["bench-quick"]
    assert quick.finetune_epochs == bench["search_epochs"] + bench["finetune_epochs"]


def test_table2_runs_the_srh_row(tiny_data, tmp_path):
    argv = ["--data", tiny_data, "--rows", "SRH", "--bits", "32", "--finetune-epochs", "1", "--batch-size", "16",
            "--seed", "5", "--jobs", "1", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out"),
            "--no-figures"]
    assert table2.main(argv) == 0
    (line,) = pd.read_csv(tmp_path / "out" / "table2.csv").to_dict("records")
    metrics = json.loads((tmp_path / "work" / "srh-32b-s5" / "metrics.json").read_text())
    assert line["row"] == "SRH" and line["group"] == "expert-hashing" and line["params"] == metrics["params"]
    assert line["test_mAP@100"] == pytest.approx(metrics["test_mAP@100"], abs=5e-5)
    markdown = (tmp_path / "out" / "table2.md").read_text()
    assert f"| SRH | {metrics['test_mAP@100']:.4f} | 0.3205 | 0.3699 |" in markdown  # the paper's 32-bit numbers
