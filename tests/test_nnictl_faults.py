"""Trial faults end to end through ``nnictl`` on loopback (docs/faults.md), with NNI 3.0's local training service.

* A trial whose worker is SIGKILLed mid-run (the OOM killer) is FAILED with the reason in its trial.log and
  trial.stderr (:mod:`avnas_nni.supervisor`; unsupervised, NNI marked it USER_CANCELED with no reason); the other
  trials run on; ``avnas compare`` lists it as unfinished; its run directory keeps the last finished epoch.
* ``nnictl stop`` while a trial runs, then ``nnictl resume``: the unfinished configuration continues from its last
  finished epoch in its keyed run directory, the grid's other points run, and nothing runs twice.
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
SETTLE_S = 6


def _running_trial_with_a_checkpoint(exp_dir: Path, deadline: float) -> tuple[str, int, Path]:
    """(trial id, worker pid, run dir) of the first trial whose run holds a finished search epoch; the pid from
    RUN/.lock, the run directory as the trial links it (``TRIAL/run`` → ``EXPERIMENT/avnas-runs/KEY``)."""
    while time.monotonic() < deadline:
        for lock in exp_dir.glob("environments/*/trials/*/run/.lock"):
            if (lock.parent / "checkpoints" / "search" / "last.ckpt").is_file():
                holder = lock.read_text().split()
                if holder:
                    return lock.parts[-3], int(holder[0]), lock.parent.resolve()
        time.sleep(0.2)
    raise AssertionError(f"no trial of {exp_dir} finished a search epoch within {DEADLINE_S} s")


def _create(root: Path, port: int, config: dict) -> str:
    (root / "config.yml").write_text(json.dumps(config))  # JSON is YAML
    created = subprocess.run([str(NNICTL), "create", "--config", str(root / "config.yml"), "--port", str(port)],
                             capture_output=True, text=True, timeout=120, cwd=root)
    match = re.search(r"Experiment ID: (?:\x1b\[[0-9;]*m)?(\w+)", created.stdout + created.stderr)
    assert created.returncode == 0 and match, created.stdout + created.stderr
    return match.group(1)


def _config(root: Path, tiny_data: str, **extra) -> dict:
    trial = (f"{sys.executable} -m avnas_nni.trial --data {tiny_data} --no-onnx --threads 1 --set search_epochs=3 "
             "--set finetune_epochs=2 --set batch_size=16 --set bits=8")
    return {"experimentName": "avnas-test-faults", "searchSpace": {"seed": {"_type": "choice", "_value": [1, 2]}},
            "trialCommand": trial, "trialCodeDirectory": str(REPO), "trialConcurrency": 1,
            "tuner": {"name": "GridSearch"}, "experimentWorkingDirectory": str(root),
            "trainingService": {"platform": "local", "useActiveGpu": False}, **extra}


def _wait_for_end(port: int, deadline: float, ends: tuple[str, ...], seeds: tuple[int, ...] = ()) -> list[dict]:
    """The experiment's trial jobs once it has ended: status in ``ends``, no trial WAITING or RUNNING, every seed
    in ``seeds`` has a SUCCEEDED trial, and all of that unchanged on two polls ``SETTLE_S`` apart.

    A single poll is not enough: NNI 3.0's manager reports TUNER_NO_MORE_TRIAL while a trial the tuner has issued
    waits in its own queue, invisible to ``trial-jobs`` until the next dispatch (after a resume the grid's next
    point arrives that way). Raises AssertionError naming the last status and trials when ``deadline`` passes or
    the experiment ends in ERROR/STOPPED.
    """
    status, jobs, settled = None, [], None
    while time.monotonic() < deadline:
        status, jobs = get(port, "check-status")["status"], get(port, "trial-jobs")
        if status in ("ERROR", "STOPPED"):
            break
        done = {json.loads(job["hyperParameters"][0])["parameters"]["seed"] for job in jobs
                if job["status"] == "SUCCEEDED"}
        ended = (status in ends and not any(job["status"] in ("WAITING", "RUNNING") for job in jobs)
                 and set(seeds) <= done)
        snapshot = (status, sorted((job["trialJobId"], job["status"]) for job in jobs))
        if ended and settled == snapshot:
            return jobs
        settled = snapshot if ended else None
        time.sleep(SETTLE_S if ended else 2)
    raise AssertionError(f"the experiment did not end as {ends} with seeds {seeds} done: last status {status!r}, "
                         f"trials {[(job['trialJobId'], job['status']) for job in jobs]}")


def test_a_killed_trial_does_not_stop_the_others_and_keeps_its_epochs(tiny_data, tmp_path, capsys):
    if not NNICTL.is_file():
        pytest.fail(f"nnictl not found next to {sys.executable}: install the package with its dependencies")
    port, root = free_port(), tmp_path / "nni"
    root.mkdir()
    exp_id = _create(root, port, _config(root, tiny_data, maxTrialNumber=2))
    try:
        deadline = time.monotonic() + DEADLINE_S
        killed, pid, run_dir = _running_trial_with_a_checkpoint(root / exp_id, deadline)
        os.kill(pid, signal.SIGKILL)  # the worker, as the OOM killer would
        jobs = {job["trialJobId"]: job for job in _wait_for_end(port, deadline, ("DONE",))}
        assert jobs[killed]["status"] == "FAILED"
        reason = f"avnas trial: the worker (pid {pid}) was killed by SIGKILL from outside the trial"
        trial_dir = root / exp_id / "environments" / "local-env" / "trials" / killed
        assert reason in (trial_dir / "trial.log").read_text() and reason in (trial_dir / "trial.stderr").read_text()
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


def test_nnictl_resume_continues_the_unfinished_trials(tiny_data, tmp_path):
    if not NNICTL.is_file():
        pytest.fail(f"nnictl not found next to {sys.executable}: install the package with its dependencies")
    port, root = free_port(), tmp_path / "nni"
    root.mkdir()
    # No maxTrialNumber: the grid bounds the experiment (as in the shipped compare configs); a configuration that
    # GridSearch issues again after the resume reads its finished run back instead of taking a grid point's place.
    exp_id = _create(root, port, _config(root, tiny_data))
    try:
        deadline = time.monotonic() + DEADLINE_S
        stopped, _, run_dir = _running_trial_with_a_checkpoint(root / exp_id, deadline)
        subprocess.run([str(NNICTL), "stop", exp_id], capture_output=True, text=True, timeout=120, check=True)
        assert not (run_dir / "metrics.json").is_file(), "the trial finished before the stop: nothing was tested"
        resumed = subprocess.run([str(NNICTL), "resume", exp_id, "--port", str(port)], capture_output=True,
                                 text=True, timeout=120, cwd=root)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        jobs = _wait_for_end(port, deadline, ("DONE", "NO_MORE_TRIAL", "TUNER_NO_MORE_TRIAL"), seeds=(1, 2))
    finally:
        subprocess.run([str(NNICTL), "stop", exp_id], capture_output=True, text=True, timeout=120)
    finals: dict[int, set[float]] = {}
    for job in jobs:
        if job["status"] != "SUCCEEDED":  # only the stopped trial may have ended otherwise (as NNI stored it)
            assert job["trialJobId"] == stopped, job
            continue
        seed = json.loads(job["hyperParameters"][0])["parameters"]["seed"]
        finals.setdefault(seed, set()).add(json.loads(json.loads(job["finalMetricData"][0]["data"]))["default"])
    # every grid point finished; one issued twice (the recovered trial and GridSearch's new one) reports one result
    assert sorted(finals) == [1, 2] and all(len(values) == 1 for values in finals.values()), finals
    # The stopped configuration continued where it stopped: each of its epochs was trained once.
    history = (run_dir / "history.csv").read_text().splitlines()[1:]
    stages = [(line.split(",")[0], int(line.split(",")[1])) for line in history]
    assert stages == [("search", 0), ("search", 1), ("search", 2), ("finetune", 0), ("finetune", 1)], stages
    logs = "".join(path.read_text() for path in (root / exp_id).glob("environments/*/trials/*/trial.log"))
    assert f"{run_dir}: continuing the unfinished run of an earlier trial of this configuration" in logs
