"""The video-hashing methods of Table 2 (avnas_nni.methods): AVHash's network and loss, its runs, its Table 2 row."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from avnas_nni.data import TripletSampler
from avnas_nni.evaluator import encode, load_split
from avnas_nni.methods import METHODS, AVHash, HashingMethod, MethodModule, build_method
from avnas_nni.pipeline import RunSettings, evaluate_run, load_run_model, run_method
from avnas_nni.runs import RunError
from benchmarks import table2
from benchmarks._common import run_codes
from benchmarks.rows import ROWS, Row, register_row

# d = 12 is too narrow for BERT's 0.1 dropout to let AVHash learn in a few dozen steps; the paper's d is 768.
TINY_AVHASH = {"dropout": 0.0}


def _settings(data: str, **kwargs) -> RunSettings:
    defaults = dict(data=data, method="avhash", bits=8, finetune_epochs=10, batch_size=8, seed=7,
                    extra={"method": TINY_AVHASH})
    return RunSettings(**(defaults | kwargs))


@pytest.fixture(scope="module")
def runs(tiny_data, tmp_path_factory):
    """The same AVHash network (same seed, same initial weights) untrained and trained for 10 epochs."""
    root = tmp_path_factory.mktemp("methods")
    untrained = run_method(_settings(tiny_data, finetune_epochs=0), root / "untrained")
    trained = run_method(_settings(tiny_data), root / "trained")
    return root, untrained, trained


def test_avhash_maps_features_to_codes_in_the_unit_interval():
    torch.manual_seed(0)
    model = AVHash(dim=12, length=12, bits=8).eval()
    visual, audio = torch.randn(5, 12, 12), torch.randn(5, 12, 12)
    pooled_audio, pooled_image, codes = model.outputs(visual, audio)
    assert pooled_audio.shape == pooled_image.shape == (5, 12) and codes.shape == (5, 8)
    assert codes.abs().max() <= 1 and torch.equal(model(visual, audio), codes)
    assert not torch.allclose(codes[0], codes[1])  # the codes depend on the video
    rebuilt = build_method("avhash", **model.config())
    rebuilt.load_state_dict(model.state_dict())
    assert torch.equal(rebuilt.eval()(visual, audio), codes)
    assert model(visual[:, :7], audio[:, :7]).shape == (5, 8)  # fewer frames than built for
    with pytest.raises(ValueError, match="built for 12 frames"):
        model(torch.randn(1, 13, 12), torch.randn(1, 13, 12))
    with pytest.raises(ValueError, match="not divisible"):
        AVHash(dim=10, length=12, bits=8)
    # The paper's size: d = 768, m = 25, q = 64 (paper Table 2: 28.4M).
    assert 27e6 < sum(p.numel() for p in AVHash().parameters()) < 29e6


def test_avhash_loss_is_finite_and_falls(tiny_data):
    visual, audio, labels = load_split(tiny_data, "train")
    rows = torch.from_numpy(TripletSampler(labels, 4, 0).epoch_triplets(0)[:16])  # (16, 6): anchor, positive, 4 neg
    torch.manual_seed(0)
    model = AVHash(dim=12, length=12, bits=8, **TINY_AVHASH)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-3)
    losses = []
    for _ in range(12):
        loss = model.training_loss(visual[rows], audio[rows], tau=0.1)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False)), losses
    # 4 modality terms at weight 50 and the video term, each ≥ 0 and ≈ ln 5 for near-constant outputs.
    assert 150 < losses[0] < 400
    with pytest.raises(ValueError, match="triplet rows"):
        model.training_loss(visual[:4], audio[:4], tau=0.1)


def test_a_run_writes_a_complete_run_directory_and_learns(runs):
    root, untrained, trained = runs
    out = root / "trained"
    for name in ("settings.json", "arch.json", "metrics.json", "history.csv", "model.safetensors"):
        assert (out / name).is_file(), name
    record = json.loads((out / "arch.json").read_text())
    assert record["method"] == "avhash" and record["kwargs"]["dim"] == 12
    assert "ACM Multimedia 2024" in record["citation"]
    assert json.loads((out / "settings.json").read_text())["method"] == "avhash"
    assert trained["strategy"] == "fixed" and trained["method"] == "avhash"
    for key in ("params", "train_seconds_per_epoch", "infer_seconds_per_12.5k"):
        assert trained[key] > 0, key
    assert "supernet_seconds_per_epoch" not in trained and "search_seconds" not in trained
    weights = load_file(str(out / "model.safetensors"))
    assert sum(v.numel() for v in weights.values()) == trained["params"] == untrained["params"]
    history = pd.read_csv(out / "history.csv")
    assert list(history["stage"]) == ["finetune"] * 10 and history["train_loss"].notna().all()
    # Training beats the very same network untrained (whose codes are close to chance).
    assert trained["val_mAP@100"] > untrained["val_mAP@100"] + 0.05, (trained["val_mAP@100"], untrained["val_mAP@100"])
    assert trained["test_mAP@100"] > untrained["test_mAP@100"]
    assert trained["val_mAP@100"] == pytest.approx(history["val_mAP"].max(), abs=1e-6)  # best val epoch kept


def test_load_run_model_rebuilds_the_method_with_its_weights(runs):
    root, _, trained = runs
    out = root / "trained"
    model, settings, record = load_run_model(out)
    assert isinstance(model, AVHash) and settings.method == "avhash" and record["method"] == "avhash"
    again, _, _ = load_run_model(out)
    visual, audio, _ = load_split(settings.data, "test")
    assert torch.equal(encode(model.eval(), visual, audio), encode(again.eval(), visual, audio))
    assert evaluate_run(out, "test")["mAP@100"] == pytest.approx(trained["test_mAP@100"], abs=1e-12)
    query, _, database, _ = run_codes(out)  # what the figures read
    assert query.shape == (len(visual), 8) and set(np.unique(database)) <= {-1, 1}


def test_bad_method_names_and_records(tmp_path, runs):
    assert "avhash" in METHODS and METHODS["avhash"] is AVHash
    with pytest.raises(ValueError, match="unknown method"):
        build_method("nope")
    with pytest.raises(ValueError, match="method: expected one of"):
        RunSettings(method="nope")
    assert RunSettings(method="avhash").strategy == "fixed"
    with pytest.raises(ValueError, match="settings\\['method'\\]"):
        register_row(Row("No method", "2", "method", {}))
    root, _, _ = runs
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("settings.json", "model.safetensors"):
        (broken / name).write_bytes((root / "trained" / name).read_bytes())
    (broken / "arch.json").write_text(json.dumps({"method": "avhash", "kwargs": {"dim": 12, "width": 3}}))
    with pytest.raises(RunError, match="arch.json"):
        load_run_model(broken)


class _MeanPool(HashingMethod):
    """A toy unsupervised method: records what its loss receives."""

    name, supervised = "toy", False

    def __init__(self, dim: int, bits: int):
        super().__init__()
        self.fc = torch.nn.Linear(2 * dim, bits)
        self.seen: list[torch.Tensor] = []

    def forward(self, visual, audio):
        return torch.tanh(self.fc(torch.cat([visual.mean(1), audio.mean(1)], -1)))

    def training_loss(self, visual, audio, *, tau):
        self.seen.append(visual)
        return self(visual, audio).pow(2).mean()


def test_unsupervised_methods_get_the_videos_alone(tiny_data):
    module = MethodModule(tiny_data, seed=3)
    toy = _MeanPool(12, 8)
    module.set_model(toy)
    positions = torch.arange(5)
    loss = module.triplet_loss((torch.zeros(5, dtype=torch.long), positions))
    assert torch.isfinite(loss)
    visual = load_split(tiny_data, "train")[0]
    (seen,) = toy.seen
    assert seen.shape == (5, 12, 12)  # videos, not triplet rows
    order = np.random.default_rng([3, 0, 0, 1]).permutation(len(visual))
    assert torch.equal(seen, visual[order[:5]])  # this epoch's seeded order


def test_table2_runs_the_avhash_row(tiny_data, tmp_path):
    argv = ["--data", tiny_data, "--rows", "AVHash", "--bits", "32", "--finetune-epochs", "1", "--batch-size", "16",
            "--seed", "5", "--jobs", "1", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")]
    assert table2.main(argv) == 0
    results = pd.read_csv(tmp_path / "out" / "table2.csv")
    (line,) = results.to_dict("records")
    metrics = json.loads((tmp_path / "work" / "avhash-32b-s5" / "metrics.json").read_text())
    assert line["row"] == "AVHash" and line["group"] == "expert-hashing" and line["table"] == 2
    assert line["test_mAP@100"] == pytest.approx(metrics["test_mAP@100"], abs=5e-5)
    assert line["params"] == metrics["params"]
    assert np.isnan(line["supernet_s_per_epoch"]) and np.isnan(line["search_s"]) and line["train_s_per_epoch"] > 0
    markdown = (tmp_path / "out" / "table2.md").read_text()
    assert f"| AVHash | {metrics['test_mAP@100']:.4f} | 0.8530 | 0.9208 |" in markdown  # the paper's 32-bit numbers
    assert (tmp_path / "out" / "fig6_curves.png").is_file()  # the figures read method runs too
    assert ROWS["AVHash"].settings == {"method": "avhash"}


def test_the_paper_profile_gives_a_method_its_papers_settings(monkeypatch):
    monkeypatch.setattr(AVHash, "paper_settings", {**AVHash.paper_settings, "finetune_lr": 5e-5, "batch_size": 64})
    base = {**table2.BENCH_PROFILES["paper"], "profile": "paper"}
    settings = table2._settings(ROWS["AVHash"], 64, 1, base)
    assert (settings.finetune_lr, settings.batch_size, settings.finetune_eps, settings.n_neg) == (5e-5, 64, 1e-3, 4)
    assert settings.finetune_epochs == 300 and settings.method == "avhash" and settings.strategy == "fixed"
    flagged = table2._settings(ROWS["AVHash"], 64, 1, {**base, "batch_size": 16})  # --batch-size 16 wins
    assert flagged.batch_size == 16 and flagged.finetune_lr == 5e-5
    quick = table2._settings(ROWS["AVHash"], 64, 1, {**table2.BENCH_PROFILES["quick"], "profile": "quick"})
    assert (quick.batch_size, quick.finetune_lr, quick.finetune_epochs) == (32, 1e-3, 6)  # the quick profile as is
    # Unpatched, AVHash's paper settings are what the paper profile gives every row (SPEC §4 is AVHash's setting).
    monkeypatch.undo()
    plain, darts = (table2._settings(ROWS[name], 64, 1, base) for name in ("AVHash", "DARTS"))
    for key, value in AVHash.paper_settings.items():
        assert getattr(plain, key) == getattr(darts, key) == value, key


def test_claims_and_paired_tests_count_avhash(monkeypatch):
    results = pd.DataFrame([
        {"row": "AV-NAS (Arch-1)", "table": "2", "bits": 64, "test_mAP@100": 0.80, "run": "a"},
        {"row": "DARTS", "table": "2", "bits": 64, "test_mAP@100": 0.70, "run": "b"},
        {"row": "Random 5", "table": "2", "bits": 64, "test_mAP@100": 0.75, "run": "c"},
        {"row": "AVHash", "table": "2", "bits": 64, "test_mAP@100": 0.85, "run": "d"},
    ]).assign(supernet_s_per_epoch=None)
    lines = table2.claims(results, [64])
    assert any("expert-designed video-hashing method (64 bits): does NOT hold" in line and "method AVHash 0.8500"
               in line and "-0.0500" in line for line in lines), lines
    assert any("every NAS baseline (64 bits): holds" in line and "baseline DARTS" in line for line in lines), lines
    per_query = {"AV-NAS (Arch-1)": np.linspace(0, 1, 20), "AVHash": np.linspace(0, 1, 20) ** 2,
                 "Random 5": np.linspace(0, 1, 20) ** 3}
    monkeypatch.setattr(table2, "_seed_mean_ap", lambda res, name, b: per_query[name])
    tests = table2.paired_tests(results, [64])
    assert len(tests) == 1 and "AV-NAS vs AVHash" in tests[0]  # AVHash is the best other row: one test
    results.loc[results["row"] == "Random 5", "test_mAP@100"] = 0.9
    tests = table2.paired_tests(results, [64])
    assert [t.split(":")[1].strip() for t in tests] == ["AV-NAS vs Random 5", "AV-NAS vs AVHash"]
