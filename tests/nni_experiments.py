"""Run a tiny strategy-comparison experiment through ``nnictl`` (shared by the local and remote tests)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from avnas_nni.compare import read_trials

from system_programs import free_port

__all__ = ["NNICTL", "REPO", "get", "launch"]

REPO = Path(__file__).resolve().parents[1]
NNICTL = Path(sys.executable).parent / "nnictl"
DEADLINE_S = 420


def get(port: int, path: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/nni/{path}", timeout=10) as response:
        return json.loads(response.read().decode())


def launch(root: Path, tiny_data: str, strategies: list[str], service: dict, **extra):
    """Create an experiment with nnictl, wait for DONE, yield its record, stop it by id at the end."""
    port = free_port()
    trial = (f"{sys.executable} -m avnas_nni.trial --data {tiny_data} --no-onnx --set search_epochs=1 "
             "--set finetune_epochs=1 --set batch_size=16 --set bits=8")
    config = {
        "experimentName": "avnas-test-compare",
        "searchSpace": {"strategy": {"_type": "choice", "_value": strategies}},
        "trialCommand": trial, "trialCodeDirectory": str(REPO), "trialConcurrency": 1,
        "maxTrialNumber": len(strategies), "tuner": {"name": "GridSearch"}, "experimentWorkingDirectory": str(root),
        "trainingService": service, **extra,
    }
    path = root / "config.yml"
    path.write_text(json.dumps(config))  # JSON is YAML
    created = subprocess.run([str(NNICTL), "create", "--config", str(path), "--port", str(port)],
                             capture_output=True, text=True, timeout=120, cwd=root)
    match = re.search(r"Experiment ID: (?:\x1b\[[0-9;]*m)?(\w+)", created.stdout + created.stderr)
    assert created.returncode == 0 and match, created.stdout + created.stderr
    exp_id = match.group(1)
    seen_running = None
    try:
        deadline = time.monotonic() + DEADLINE_S
        status = None
        while time.monotonic() < deadline:
            status = get(port, "check-status")["status"]
            if seen_running is None and status == "RUNNING":
                seen_running = read_trials(root / exp_id)[1]
            if status in ("DONE", "ERROR", "STOPPED"):
                break
            time.sleep(3)
        assert status == "DONE", f"experiment {exp_id} ended as {status!r} within {DEADLINE_S} s"
        yield {"id": exp_id, "root": root, "port": port, "jobs": get(port, "trial-jobs"),
               "read_while_running": seen_running}
    finally:
        subprocess.run([str(NNICTL), "stop", exp_id], capture_output=True, text=True, timeout=120)


