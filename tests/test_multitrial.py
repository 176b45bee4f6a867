"""``avnas nas``: NNI's multi-trial Random over the AV-NAS space, every architecture an NNI trial with metrics."""

from __future__ import annotations

import pytest

from avnas_nni.compare import read_trials
from avnas_nni.multitrial import run_multitrial
from avnas_nni.pipeline import RunSettings, build_space
from search_spaces import check_sample

from system_programs import free_port


def test_random_multitrial_trains_each_architecture_as_a_trial(tiny_data, tmp_path):
    settings = RunSettings(strategy="fixed", data=tiny_data, bits=8, finetune_epochs=1, batch_size=16, seed=4)
    best, exp_id = run_multitrial("random", settings, port=free_port(), trials=2, work_dir=tmp_path)
    assert 1 <= len(best) <= 2
    space = build_space(settings)
    for arch in best:
        check_sample(space, arch, "exported")
    trials, source = read_trials(tmp_path / exp_id)
    assert source == "database" and len(trials) == 2
    assert [t["status"] for t in trials] == ["SUCCEEDED", "SUCCEEDED"]
    for trial in trials:
        assert 0.0 <= float(trial["final"]) <= 1.0 and trial["intermediate"] == 1  # one epoch, one val mAP


def test_unknown_multitrial_strategy():
    with pytest.raises(ValueError, match="unknown multi-trial strategy"):
        run_multitrial("grid", RunSettings())
