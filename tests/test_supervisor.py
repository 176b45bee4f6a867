"""The NNI trial's supervisor and its run directory keyed by settings (docs/faults.md): a worker killed from outside
fails the trial with its reason; a configuration issued again continues, or reads back, its run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from avnas_nni import trial
from avnas_nni.runs import RunDir, RunLock, run_key
from avnas_nni.supervisor import supervise

SUPERVISE = textwrap.dedent("""
    import sys
    from pathlib import Path
    from avnas_nni.supervisor import supervise
    link = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    log = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    sys.exit(supervise([sys.executable, "-c", sys.stdin.read()], run_link=link, trial_log=log))
""")


def _supervised(worker: str, *args: str, **kwargs) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", SUPERVISE, *args], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
    process.stdin.write(textwrap.dedent(worker))
    process.stdin.close()
    return process


def test_the_workers_exit_code_is_the_trials():
    assert supervise([sys.executable, "-c", "import sys; sys.exit(3)"]) == 3
    assert supervise([sys.executable, "-c", "import os; assert os.environ['AVNAS_TRIAL_WORKER'] == '1'"]) == 0


def test_a_worker_killed_from_outside_fails_the_trial_with_its_reason(tmp_path):
    run = tmp_path / "keyed-run"
    run.mkdir()
    (tmp_path / "run").symlink_to(run)
    log = tmp_path / "trial.log"
    log.write_text("[2026-12-02 05:00:57] INFO (avnas_nni.pipeline/MainThread) search epoch 3\n")
    process = _supervised("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", str(tmp_path / "run"), str(log))
    assert process.wait(timeout=60) == 128 + signal.SIGKILL  # an exit code: NNI records FAILED, not USER_CANCELED
    err = process.stderr.read()
    assert "was killed by SIGKILL from outside the trial" in err and f"its run directory {run}" in err
    assert log.read_text().splitlines()[-1].endswith(err.strip())


def test_nnis_cancel_reaches_the_worker_and_ends_the_trial_as_before():
    worker = """
        import signal, sys, time
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        print("ready", flush=True)
        time.sleep(60)
    """
    process = _supervised(worker)
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 143
    process = _supervised("import time; print('ready', flush=True); time.sleep(60)")
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGINT)  # the worker dies of it: so does the supervisor, as the trial did unsupervised
    assert process.wait(timeout=30) == -signal.SIGINT


def test_the_worker_stops_when_its_supervisor_is_killed(tmp_path):
    marker = tmp_path / "worker.pid"
    worker = f"""
        import os, signal, sys, time
        from pathlib import Path
        signal.signal(signal.SIGTERM, lambda *_: (Path({str(marker)!r} + ".term").write_text("1"), sys.exit(143)))
        Path({str(marker)!r}).write_text(str(os.getpid()))
        time.sleep(60)
    """
    process = _supervised(worker)
    deadline = time.monotonic() + 30
    while not marker.is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.kill()  # NNI's SIGKILL 5 s after a cancel the worker did not finish
    process.wait(timeout=10)
    while not Path(f"{marker}.term").is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert Path(f"{marker}.term").is_file(), "the orphaned worker did not get SIGTERM"


@pytest.fixture()
def nni_output(tmp_path, monkeypatch):
    """A trial output directory laid out as NNI 3.0's local training service lays it out."""
    monkeypatch.setenv("NNI_EXP_ID", "exp1")
    output = tmp_path / "exp1" / "environments" / "local-env" / "trials" / "T1"
    output.mkdir(parents=True)
    return output


def test_a_trials_run_directory_is_keyed_by_its_settings(nni_output, tmp_path):
    settings, _ = trial.settings_from_parameters({"strategy": "darts", "bits": 8, "seed": 1}, {})
    run = trial.trial_run_dir(settings, nni_output)
    assert run == tmp_path / "exp1" / "avnas-runs" / run_key(asdict(settings))
    assert run.name.startswith("darts-8b-s1-") and (nni_output / "run").resolve() == run
    other = nni_output.parent / "T2"
    other.mkdir()
    assert trial.trial_run_dir(settings, other) == run  # the same configuration again: the same run
    assert trial.trial_run_dir(replace(settings, seed=2), other / "x") != run
    with RunLock(run):  # that configuration running now in another trial: this one waits, then runs on its own
        assert trial.trial_run_dir(settings, other / "y", wait_s=1.5) == other / "y" / "run"


def test_outside_nnis_local_layout_the_run_is_the_trials_own(tmp_path, monkeypatch):
    monkeypatch.setenv("NNI_EXP_ID", "exp1")
    settings, _ = trial.settings_from_parameters({}, {})
    assert trial.trial_run_dir(settings, tmp_path / "out") == tmp_path / "out" / "run"
    monkeypatch.delenv("NNI_OUTPUT_DIR", raising=False)
    assert trial.trial_run_dir(settings) == Path("runs") / "trial"


def test_a_configuration_issued_again_continues_or_reads_back_its_run(tiny_data, tmp_path, monkeypatch):
    settings, _ = trial.settings_from_parameters({"arch": "transformer", "bits": 8},
                                                 {"data": tiny_data, "finetune_epochs": 1, "batch_size": 16})
    calls = []
    monkeypatch.setattr(trial, "run_train", lambda s, out, resume, on_epoch: calls.append(resume) or {"done": 1})
    run = tmp_path / "run"
    assert trial._run("train", settings, run, None) == {"done": 1} and calls == [False]
    RunDir(run).write_settings(asdict(settings))  # an earlier trial started it and was killed
    trial._run("train", settings, run, None)
    assert calls == [False, True]
    (run / "metrics.json").write_text(json.dumps({"test_mAP@100": 0.5}))  # an earlier trial finished it
    assert trial._run("train", settings, run, None) == {"test_mAP@100": 0.5} and calls == [False, True]


def test_the_supervisor_process_holds_no_torch(tmp_path):
    """``python -m avnas_nni.trial`` waits in a small process: torch is imported by its worker only."""
    probe = tmp_path / "probe.py"
    probe.write_text("import sys, avnas_nni.supervisor as s\n"
                     "s.supervise = lambda *a, **k: print('torch' in sys.modules) or 0\n"
                     "import runpy; runpy.run_module('avnas_nni.trial', run_name='__main__')\n")
    env = {key: value for key, value in os.environ.items() if key != "AVNAS_TRIAL_WORKER"}
    done = subprocess.run([sys.executable, str(probe)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr[-2000:]
