"""End to end through NNI: ``nnictl create --config`` runs a tiny strategy comparison to DONE on loopback.

Two strategies succeed and one trial with an impossible setting fails without stopping the others; the REST
API shows every final metric with its strategy; ``avnas compare`` reads the experiment back while it runs
(REST) and after it stops (database); the experiment is stopped by its id.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from avnas_nni.cli import main as avnas
from avnas_nni.compare import read_trials, summarise

from nni_experiments import NNICTL, launch


@pytest.fixture(scope="module")
def experiment(tiny_data, tmp_path_factory):
    if not NNICTL.is_file():
        pytest.fail(f"nnictl not found next to {sys.executable}: install the package with its dependencies")
    # "bogus" is an impossible strategy: that trial fails, the others must not.
    yield from launch(tmp_path_factory.mktemp("nni"), tiny_data, ["avnas", "darts", "bogus"],
                       {"platform": "local", "useActiveGpu": False})


def _final(job) -> dict:
    return json.loads(json.loads(job["finalMetricData"][-1]["data"]))


def test_every_good_trial_succeeds_with_its_strategy_and_the_bad_one_fails(experiment):
    jobs = experiment["jobs"]
    by_status = {}
    for job in jobs:
        by_status.setdefault(job["status"], []).append(job)
    assert len(by_status.get("SUCCEEDED", [])) == 2 and len(by_status.get("FAILED", [])) == 1, by_status.keys()
    finals = [_final(job) for job in by_status["SUCCEEDED"]]
    assert sorted(f["strategy"] for f in finals) == ["avnas", "darts"]
    for final in finals:
        assert 0.0 <= final["default"] <= 1.0 and final["bits"] == 8 and final["arch"]
    failed = by_status["FAILED"][0]
    assert json.loads(failed["hyperParameters"][0])["parameters"]["strategy"] == "bogus"


def test_compare_reads_the_experiment_while_running_and_after_stopping(experiment, capsys):
    assert experiment["read_while_running"] == "rest"
    subprocess.run([str(NNICTL), "stop", experiment["id"]], capture_output=True, text=True, timeout=120)
    trials, source = read_trials(experiment["root"] / experiment["id"])
    assert source == "database" and len(trials) == 3
    table, summary = summarise(trials)
    assert sorted(summary["strategy"]) == ["avnas", "darts"] and (summary["trials"] == 1).all()
    expected = {_final(job)["strategy"]: _final(job)["default"] for job in experiment["jobs"]
                if job["status"] == "SUCCEEDED"}
    assert dict(zip(summary["strategy"], summary["test_mAP_mean"], strict=True)) == pytest.approx(expected)
    out = experiment["root"] / "compare"
    assert avnas(["compare", experiment["id"], "--root", str(experiment["root"]), "--out", str(out)]) == 0
    assert "1 trial(s) did not finish" in capsys.readouterr().out
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"
