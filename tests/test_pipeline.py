"""search → prune → fine-tune → test on the AV-NAS space with tiny data; resume; fixed architectures; errors."""

from __future__ import annotations

import json
import math
import signal

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from avnas_nni import pipeline
from avnas_nni.cli import main
from avnas_nni.errors import DataError
from avnas_nni.pipeline import RunSettings, evaluate_run, load_run_model, run_search, run_train
from avnas_nni.runs import RunError
from search_spaces import AVNASSpace, check_sample, get_expert


def _settings(data: str, **kwargs) -> RunSettings:
    defaults = dict(data=data, bits=8, search_epochs=2, finetune_epochs=2, batch_size=16, seed=7)
    return RunSettings(**(defaults | kwargs))


@pytest.fixture(scope="module")
def avnas_run(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "avnas"
    metrics = run_search(_settings(tiny_data), out)
    return out, metrics


def test_search_writes_a_complete_run_directory(avnas_run, tiny_data):
    out, metrics = avnas_run
    for name in ("settings.json", "arch.json", "metrics.json", "history.csv", "model.safetensors"):
        assert (out / name).is_file(), name
    record = json.loads((out / "arch.json").read_text())
    space = AVNASSpace(**{k: tuple(v) if k == "modalities" else v for k, v in record["space"].items()})
    check_sample(space, record["arch"])
    for label, probs in record["probs"].items():
        assert abs(sum(probs.values()) - 1) < 1e-5
        assert probs[record["arch"][label]] == max(probs.values())  # Arch-1 = argmax softmax(α*)
    history = pd.read_csv(out / "history.csv")
    assert list(history["stage"]) == ["search", "search", "finetune", "finetune"]
    assert history["val_mAP"].between(0, 1).all() and history["train_loss"].notna().all()
    assert 0 <= metrics["test_mAP@100"] <= 1 and 0 <= metrics["val_mAP@100"] <= 1
    for key in ("P@5", "P@100", "R@200"):
        assert 0 <= metrics["test"][key] <= 1
    for key in ("params", "supernet_seconds_per_epoch", "search_seconds", "finetune_seconds_per_epoch",
                "infer_seconds_per_12.5k"):
        assert metrics[key] > 0, key
    weights = load_file(str(out / "model.safetensors"))
    assert sum(v.numel() for v in weights.values()) == metrics["params"]


def test_evaluate_reproduces_the_runs_test_metrics(avnas_run):
    out, metrics = avnas_run
    report = evaluate_run(out, split="test")
    assert report["mAP@100"] == pytest.approx(metrics["test_mAP@100"], abs=1e-9)
    model, settings, _ = load_run_model(out)
    assert settings.bits == 8 and sum(p.numel() for p in model.parameters()) == metrics["params"]
    assert evaluate_run(out, split="val", data=settings.data)["mAP@100"] == pytest.approx(
        metrics["val_mAP@100"], abs=1e-9)


def test_evaluate_on_data_of_another_shape_is_a_user_error(avnas_run, tmp_path, capsys):
    from avnas_nni.data import write_synthetic

    out, _ = avnas_run
    wider = write_synthetic(tmp_path / "wider", num_class=4, n_train=8, n_val=4, n_test=4, m=12, d=16, seed=1)
    with pytest.raises(DataError, match=r"features are \(m=12, d=16\); the network of .* expects \(m=12, d=12\)"):
        evaluate_run(out, data=str(wider))
    assert main(["evaluate", str(out), "--data", str(wider)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_fine_tuning_starts_from_the_supernet_weights(tiny_data, tmp_path):
    out = tmp_path / "w-star"
    run_search(_settings(tiny_data, search_epochs=1, finetune_epochs=0), out)
    init = load_file(str(out / "pruned_init.safetensors"))
    final = load_file(str(out / "model.safetensors"))
    assert init.keys() == final.keys()
    assert all(torch.equal(init[k], final[k]) for k in init)  # 0 fine-tune epochs: W** = W*
    sample = json.loads((out / "arch.json").read_text())["arch"]
    fresh = pipeline.prune(pipeline.build_space(_settings(tiny_data)), sample)
    assert any(not torch.equal(init[k], v) for k, v in fresh.state_dict().items())  # W* is trained, not a re-init


def test_same_seed_same_architecture_other_seed_differs(avnas_run, tiny_data, tmp_path):
    out, _ = avnas_run
    run_search(_settings(tiny_data), tmp_path / "again")
    first = json.loads((out / "arch.json").read_text())
    again = json.loads((tmp_path / "again" / "arch.json").read_text())
    assert again["arch"] == first["arch"] and again["probs"] == first["probs"]
    assert json.loads((tmp_path / "again" / "metrics.json").read_text())["test_mAP@100"] == pytest.approx(
        json.loads((out / "metrics.json").read_text())["test_mAP@100"], abs=1e-12)
    run_search(_settings(tiny_data, seed=8, finetune_epochs=0), tmp_path / "other")
    assert json.loads((tmp_path / "other" / "arch.json").read_text())["probs"] != first["probs"]


@pytest.mark.parametrize("kind", ["train", "random"])
def test_the_seed_fixes_a_from_scratch_run_whatever_the_global_generator(tiny_data, tmp_path, kind):
    """Torch seeds its generator randomly at start-up: a net trained from scratch must not keep weights drawn before
    the run's seed was set (a fixed architecture, random search's sample)."""
    if kind == "train":
        settings = _settings(tiny_data, strategy="fixed", arch="transformer", search_epochs=0, finetune_epochs=1)
    else:
        settings = _settings(tiny_data, strategy="random", finetune_epochs=1)
    run = run_train if kind == "train" else run_search
    results = []
    for state in (1, 2):
        torch.manual_seed(state)  # what other work in the process (or its start-up) left behind
        results.append((run(settings, tmp_path / str(state))["test_mAP@100"],
                        load_file(str(tmp_path / str(state) / "model.safetensors"))))
    (map_1, weights_1), (map_2, weights_2) = results
    assert map_1 == map_2 and weights_1.keys() == weights_2.keys()
    assert all(torch.equal(weights_1[k], weights_2[k]) for k in weights_1)


@pytest.mark.parametrize("stage, epoch", [("search", 1), ("finetune", 1)])
def test_resume_after_interrupt_equals_uninterrupted(avnas_run, tiny_data, tmp_path, monkeypatch, stage, epoch):
    out, metrics = avnas_run
    original = pipeline._EpochLog.on_train_epoch_start

    def interrupt(self, trainer, pl_module):
        if self.stage == stage and trainer.current_epoch == epoch:
            raise KeyboardInterrupt
        original(self, trainer, pl_module)

    monkeypatch.setattr(pipeline._EpochLog, "on_train_epoch_start", interrupt)
    handler = signal.getsignal(signal.SIGINT)
    try:  # Lightning turns Ctrl-C into a graceful shutdown and sys.exit(1), ignoring further SIGINTs
        with pytest.raises((KeyboardInterrupt, SystemExit)):
            run_search(_settings(tiny_data), tmp_path / "run")
    finally:
        signal.signal(signal.SIGINT, handler)
    assert not (tmp_path / "run" / "metrics.json").exists()
    monkeypatch.setattr(pipeline._EpochLog, "on_train_epoch_start", original)
    resumed = run_search(_settings(tiny_data), tmp_path / "run", resume=True)
    assert resumed["test_mAP@100"] == pytest.approx(metrics["test_mAP@100"], abs=1e-12)
    assert json.loads((tmp_path / "run" / "arch.json").read_text())["arch"] == json.loads(
        (out / "arch.json").read_text())["arch"]
    a, b = load_file(str(out / "model.safetensors")), load_file(str(tmp_path / "run" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert len(history) == 4


def test_last_checkpoint_is_the_last_epoch_even_when_val_map_falls(tiny_data, tmp_path, monkeypatch):
    """--resume restarts from the last finished epoch, not from the best one (Lightning 2.6 rewrites a monitoring
    callback's last.ckpt only when the best improves; the run keeps a separate last-epoch callback)."""
    from avnas_nni.evaluator import HashingModule

    falling = iter(1.0 / (1 + i) for i in range(100))
    monkeypatch.setattr(HashingModule, "retrieval_map", lambda self, split: next(falling))
    run_train(RunSettings(strategy="fixed", arch="transformer", data=tiny_data, bits=8, finetune_epochs=3,
                          batch_size=16, seed=4), tmp_path / "run")
    checkpoints = tmp_path / "run" / "checkpoints" / "finetune"
    last = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=True)
    best = torch.load(checkpoints / "best.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 2 and best["epoch"] == 0 and last["global_step"] == 3 * best["global_step"]


def test_top2_pruning_runs_and_records_pairs(tiny_data, tmp_path):
    metrics = run_search(_settings(tiny_data, search_epochs=1, finetune_epochs=1, prune="top2"), tmp_path / "a2")
    record = json.loads((tmp_path / "a2" / "arch.json").read_text())
    assert record["prune"] == "top2"
    for label, choice in record["arch"].items():
        if isinstance(choice, list):
            assert label.split("/")[-1].startswith("M")
            p = sorted(record["probs"][label].values(), reverse=True)
            assert p[0] / p[1] <= 3.0
    assert evaluate_run(tmp_path / "a2")["mAP@100"] == pytest.approx(metrics["test_mAP@100"], abs=1e-9)


@pytest.mark.parametrize("arch", ["transformer", "transformer_plus", "mamba", "mamba-visual", "transformer_plus-audio"])
def test_fixed_architectures_train(tiny_data, tmp_path, arch):
    metrics = run_train(_settings(tiny_data, strategy="fixed", arch=arch, finetune_epochs=1), tmp_path / arch)
    assert 0 <= metrics["test_mAP@100"] <= 1 and metrics["train_seconds_per_epoch"] > 0
    record = json.loads((tmp_path / arch / "arch.json").read_text())
    if "-" in arch:
        assert record["space"]["modalities"] == [arch.split("-")[1]] and "SF" in record["arch"]


def test_train_from_an_exported_arch_json(avnas_run, tiny_data, tmp_path):
    out, _ = avnas_run
    metrics = run_train(_settings(tiny_data, strategy="fixed", arch=str(out / "arch.json"), finetune_epochs=1),
                        tmp_path / "retrain")
    assert json.loads((tmp_path / "retrain" / "arch.json").read_text())["arch"] == json.loads(
        (out / "arch.json").read_text())["arch"]
    assert 0 <= metrics["test_mAP@100"] <= 1


def test_bad_settings_are_one_line_errors(tiny_data):
    with pytest.raises(ValueError, match="unknown strategy 'bogus'"):
        _settings(tiny_data, strategy="bogus")
    with pytest.raises(ValueError, match="bits: expected an integer ≥ 1, got 0"):
        _settings(tiny_data, bits=0)
    with pytest.raises(ValueError, match="prune"):
        _settings(tiny_data, prune="best3")


def test_bad_arch_files(avnas_run, tiny_data, tmp_path):
    out, _ = avnas_run
    arch = json.loads((out / "arch.json").read_text())
    bad_cell = dict(arch, arch=arch["arch"] | {"visual/M7": "FFN"})
    (tmp_path / "cell.json").write_text(json.dumps(bad_cell))
    with pytest.raises(ValueError, match=r"cell.json: cell\(s\) \['visual/M7'\] are not in this space"):
        run_train(_settings(tiny_data, strategy="fixed", arch=str(tmp_path / "cell.json")), tmp_path / "r1")
    missing = dict(arch, arch={k: v for k, v in arch["arch"].items() if k != "T"})
    (tmp_path / "missing.json").write_text(json.dumps(missing))
    with pytest.raises(ValueError, match=r"missing.json: missing choice for cell\(s\) \['T'\]"):
        run_train(_settings(tiny_data, strategy="fixed", arch=str(tmp_path / "missing.json")), tmp_path / "r2")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(RunError, match="broken.json: not a readable JSON architecture"):
        run_train(_settings(tiny_data, strategy="fixed", arch=str(tmp_path / "broken.json")), tmp_path / "r3")


def test_run_directory_from_another_space_is_refused(avnas_run, tmp_path):
    out, _ = avnas_run
    other = tmp_path / "other"
    other.mkdir()
    for name in ("settings.json", "model.safetensors"):
        (other / name).write_bytes((out / name).read_bytes())
    record = json.loads((out / "arch.json").read_text())
    record["space"]["bits"] = 16  # weights are for 8 bits
    (other / "arch.json").write_text(json.dumps(record))
    with pytest.raises(RunError, match="model.safetensors: weights do not fit this architecture"):
        evaluate_run(other)


def test_resume_without_a_run_and_reuse_of_a_run_dir(avnas_run, tiny_data, tmp_path):
    with pytest.raises(RunError, match="nothing to resume"):
        run_search(_settings(tiny_data), tmp_path / "new", resume=True)
    out, _ = avnas_run
    with pytest.raises(RunError, match="already holds a run"):
        run_search(_settings(tiny_data), out)
    with pytest.raises(RunError, match="--resume with other settings"):
        run_search(_settings(tiny_data, bits=16), out, resume=True)


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_epoch(tiny_data, tmp_path, monkeypatch):
    from avnas_nni import evaluator

    original = evaluator.info_nce
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = original(*args, **kwargs)
        return loss * math.nan if calls["n"] > 3 else loss  # 3 batches = the first epoch of 48 videos / 16

    monkeypatch.setattr(evaluator, "info_nce", poisoned)
    with pytest.raises(FloatingPointError, match="training loss became nan at epoch 1"):
        run_search(_settings(tiny_data), tmp_path / "nan")
    assert (tmp_path / "nan" / "checkpoints" / "search" / "last.ckpt").is_file()
    assert not (tmp_path / "nan" / "metrics.json").exists()


def test_cli_search_and_errors(tiny_data, tmp_path, capsys):
    code = main(["search", "--data", tiny_data, "--bits", "8", "--epochs", "1", "--finetune-epochs", "1",
                 "--batch-size", "16", "--out", str(tmp_path / "cli"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "test mAP@100:" in out and "visual/M1" in out
    assert (tmp_path / "cli" / "run.log").read_text()
    assert main(["search", "--data", tiny_data, "--bits", "0", "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "bits: expected an integer ≥ 1" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nowhere")]) == 2
    assert "settings.json: run settings not found" in capsys.readouterr().err


def test_in_batch_negatives_option_changes_the_loss(tiny_data, tmp_path):
    from avnas_nni.evaluator import HashingModule, SplitIndex
    from avnas_nni.loss import info_nce

    torch.manual_seed(0)
    net = pipeline.prune(pipeline.build_space(_settings(tiny_data)), get_expert("transformer_plus").sample())
    batch = (torch.zeros(8, dtype=torch.long), torch.arange(8))  # split 0 = train, positions 0..7
    assert SplitIndex(tiny_data, "train")[3] == (0, 3)
    losses = {}
    for flag in (False, True):
        module = HashingModule(tiny_data, seed=1, in_batch_negatives=flag)
        module.set_model(net.eval())
        losses[flag] = module.triplet_loss(batch)
    order, triplets = module._epoch_plan("train")
    rows = torch.from_numpy(triplets[order[:8]])
    visual, audio, labels = pipeline.load_split(tiny_data, "train")
    out = net(visual[rows.reshape(-1)], audio[rows.reshape(-1)]).view(8, rows.shape[1], -1)
    torch.testing.assert_close(losses[False], info_nce(out[:, 0], out[:, 1], out[:, 2:]))
    expected = info_nce(out[:, 0], out[:, 1], out[:, 2:], in_batch_negatives=True,
                        labels=torch.from_numpy(labels[rows[:, 0].numpy()]))
    torch.testing.assert_close(losses[True], expected)
    assert not torch.allclose(losses[True], losses[False])
