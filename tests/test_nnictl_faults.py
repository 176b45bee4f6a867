"""An NNI trial SIGKILLed mid-run, end to end through ``nnictl`` on loopback (docs/faults.md).

Measured with NNI 3.0's local training service: the killed trial is marked USER_CANCELED (not FAILED) and its
trial.log ends at its last line, with no reason; the other trials run on; ``avnas compare`` lists it as unfinished;
its run directory keeps the last finished epoch, from which ``--resume`` finishes it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from avnas_nni.cli import main as avnas
from avnas_nni.pipeline import RunSettings, run_search

from nni_experiments import NNICTL, REPO, get
from system_programs import free_port

DEADLINE_S = 300


def _running_trial_with_a_checkpoint(exp_dir: Path, deadline: float) -> tuple[str, int, Path]:
    """(trial id, pid, run dir) of the first trial whose run holds a finished search epoch; the pid from RUN/.lock."""
    while time.monotonic() < deadline:
        for lock in exp_dir.glob("environments/*/trials/*/run/.lock"):
            if (lock.parent / "checkpoints" / "search" / "last.ckpt").is_file():
                holder = lock.read_text().split()
                if holder:
                    return lock.parts[-3], int(holder[0]), lock.parent
        time.sleep(0.2)
    raise AssertionError(f"no trial of {exp_dir} finished a search epoch within {DEADLINE_S} s")


def test_a_killed_trial_does_not_stop_the_others_and_keeps_its_epochs(tiny_data, tmp_path, capsys):
    if not NNICTL.is_file():
        pytest.fail(f"nnictl not found next to {sys.executable}: install the package with its dependencies")
    port, root = free_port(), tmp_path / "nni"
    root.mkdir()
    trial = (f"{sys.executable} -m avnas_nni.trial --data {tiny_data} --no-onnx --threads 1 --set search_epochs=3 "
             "--set finetune_epochs=2 --set batch_size=16 --set bits=8")
    config = {"experimentName": "avnas-test-kill", "searchSpace": {"seed": {"_type": "choice", "_value": [1, 2]}},
              "trialCommand": trial, "trialCodeDirectory": str(REPO), "trialConcurrency": 1, "maxTrialNumber": 2,
              "tuner": {"name": "GridSearch"}, "experimentWorkingDirectory": str(root),
              "trainingService": {"platform": "local", "useActiveGpu": False}}
    (root / "config.yml").write_text(json.dumps(config))
    created = subprocess.run([str(NNICTL), "create", "--config", str(root / "config.yml"), "--port", str(port)],
                             capture_output=True, text=True, timeout=120, cwd=root)
    match = re.search(r"Experiment ID: (?:\x1b\[[0-9;]*m)?(\w+)", created.stdout + created.stderr)
    assert created.returncode == 0 and match, created.stdout + created.stderr
    exp_id = match.group(1)
    try:
        deadline = time.monotonic() + DEADLINE_S
        killed, pid, run_dir = _running_trial_with_a_checkpoint(root / exp_id, deadline)
        os.kill(pid, signal.SIGKILL)
        status = None
        while time.monotonic() < deadline:
            status = get(port, "check-status")["status"]
            if status in ("DONE", "ERROR", "STOPPED"):
                break
            time.sleep(2)
        assert status == "DONE", f"experiment {exp_id} ended as {status!r}"
        jobs = {job["trialJobId"]: job for job in get(port, "trial-jobs")}
        assert jobs[killed]["status"] == "USER_CANCELED"  # NNI 3.0's word for a trial that died of a signal
        others = [job for trial_id, job in jobs.items() if trial_id != killed]
        assert [job["status"] for job in others] == ["SUCCEEDED"] and others[0]["finalMetricData"]
        assert avnas(["compare", exp_id, "--root", str(root), "--out", str(tmp_path / "compare")]) == 0
        assert f"1 trial(s) did not finish: {killed}" in capsys.readouterr().out
    finally:
        subprocess.run([str(NNICTL), "stop", exp_id], capture_output=True, text=True, timeout=120)
    # Nothing the killed trial finished is lost: its run resumes from its last epoch to a complete run.
    settings = RunSettings.from_dict(json.loads((run_dir / "settings.json").read_text()))
    metrics = run_search(settings, run_dir, resume=True)
    assert 0 <= metrics["test_mAP@100"] <= 1 and (run_dir / "metrics.json").is_file()
