"""The NNI trial entry: parameters → settings, per-epoch and final reports to the trial's own channel, ONNX."""

from __future__ import annotations

import csv
import json

import onnx
import pytest

from avnas_nni import trial
from avnas_nni.pipeline import PROFILES


class RecordingChannel:
    def __init__(self):
        self.messages = []

    def send_metric(self, **message):
        self.messages.append(message)

    def receive_parameter(self):
        return None


def test_parameters_over_defaults_over_profile():
    settings, command = trial.settings_from_parameters(
        {"strategy": "darts", "code_bits": 32, "seed": 5}, {"data": "embedded", "profile": "quick", "tau": 0.2})
    assert command == "search" and settings.strategy == "darts" and settings.bits == 32 and settings.seed == 5
    assert settings.tau == 0.2 and settings.finetune_epochs == PROFILES["quick"]["finetune_epochs"]
    settings, command = trial.settings_from_parameters({"arch": "mamba", "profile": "paper"}, {})
    assert command == "train" and settings.strategy == "fixed" and settings.batch_size == 128
    settings, command = trial.settings_from_parameters({"method": "avhash", "strategy": "darts"}, {})
    assert command == "method" and settings.method == "avhash" and settings.strategy == "fixed"
    with pytest.raises(ValueError, match=r"unknown name\(s\) \['colour'\]"):
        trial.settings_from_parameters({"colour": "red"}, {})
    with pytest.raises(ValueError, match="profile"):
        trial.settings_from_parameters({"profile": "fast"}, {})
    with pytest.raises(ValueError, match="unknown strategy"):
        trial.settings_from_parameters({"strategy": "bogus"}, {})


def test_compact_arch_is_one_short_line():
    line = trial.compact_arch({"visual/M1": "FFN", "visual/U1": "Skip", "audio/M1": ["Conv", "FFN"], "I1": "CrossSSM",
                               "F": "Add"})
    assert line == "visual: M1=FFN U1=Skip; audio: M1=Conv+FFN; I1=CrossSSM F=Add"
    assert "//" not in line


def test_trial_reports_every_epoch_then_the_final_metric(tiny_data, tmp_path, monkeypatch, capsys):
    channel = RecordingChannel()
    monkeypatch.setattr(trial, "get_default_trial_command_channel", lambda: channel)
    monkeypatch.setattr(trial, "_next_parameters", lambda: {"strategy": "avnas", "bits": 8})
    monkeypatch.setattr(trial.nni.trial, "_params", {"parameter_id": 7, "parameters": {}})
    argv = ["--data", tiny_data, "--set", "search_epochs=2", "--set", "finetune_epochs=1", "--set", "batch_size=16",
            "--out", str(tmp_path / "run")]
    assert trial.main(argv) == 0
    kinds = [m["type"] for m in channel.messages]
    assert kinds == ["PERIODICAL"] * 3 + ["FINAL"]  # 2 search epochs, 1 fine-tune epoch, then the final dict
    assert [m["sequence"] for m in channel.messages[:3]] == [0, 1, 2]
    assert all(m["parameter_id"] == 7 for m in channel.messages)
    history = list(csv.DictReader((tmp_path / "run" / "history.csv").open()))
    values = [m["value"] for m in channel.messages[:3]]
    # search epochs: {default: val mAP, alpha_entropy: mean normalised cell entropy}; fine-tune epochs: val mAP
    assert [v["default"] if isinstance(v, dict) else v for v in values] == pytest.approx(
        [float(r["val_mAP"]) for r in history])
    assert [isinstance(v, dict) for v in values] == [True, True, False]
    assert [v["alpha_entropy"] for v in values[:2]] == pytest.approx([float(r["alpha_entropy"]) for r in history[:2]])
    assert all(0.0 < v["alpha_entropy"] <= 1.0 for v in values[:2])
    final = channel.messages[-1]["value"]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert final["default"] == metrics["test_mAP@100"] and final["strategy"] == "avnas" and final["bits"] == 8
    assert set(final) >= {"val_mAP", "seed", "params", "search_s", "arch"}
    assert len(json.dumps(final)) < 2000  # trial messages stay small
    onnx.checker.check_model(onnx.load(str(tmp_path / "run" / "model.onnx")))
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["default"] == final["default"]


def test_a_method_trial_reports_and_exports(tiny_data, tmp_path, monkeypatch):
    """An expert video-hashing method as a trial (e.g. a comparison with AVHash in the grid): final dict and ONNX."""
    channel = RecordingChannel()
    monkeypatch.setattr(trial, "get_default_trial_command_channel", lambda: channel)
    monkeypatch.setattr(trial, "_next_parameters", lambda: {"method": "avhash", "bits": 8})
    monkeypatch.setattr(trial.nni.trial, "_params", {"parameter_id": 3, "parameters": {}})
    argv = ["--data", tiny_data, "--set", "finetune_epochs=1", "--set", "batch_size=16", "--out", str(tmp_path / "run")]
    assert trial.main(argv) == 0
    final = channel.messages[-1]["value"]
    assert [m["type"] for m in channel.messages] == ["PERIODICAL", "FINAL"]
    assert final["arch"] == "method=avhash" and final["strategy"] == "avhash"  # compared as its method
    onnx.checker.check_model(onnx.load(str(tmp_path / "run" / "model.onnx")))


def test_bad_trial_parameters_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(trial, "_next_parameters", lambda: {"bits": 0})
    assert trial.main(["--out", str(tmp_path / "run"), "--no-onnx"]) == 2
    assert "bits" in capsys.readouterr().err
