"""Run an NNI trial's work in a child process, so that a trial whose worker is killed says why and fails.

NNI 3.0's local training service marks a trial whose process died of a signal ``USER_CANCELED`` and its log just
stops: a SIGKILLed process (the kernel's OOM killer, a ``kill -9``) cannot write a reason. ``python -m
avnas_nni.trial`` therefore starts itself again as a worker and waits for it. The supervisor passes the signals
NNI sends on a cancel or ``nnictl stop`` (SIGINT, SIGTERM, SIGHUP) on to the worker and ends as the worker ended;
a worker killed by a signal nobody passed on is reported in one line on stderr (NNI's ``trial.stderr``) and in
NNI's ``trial.log``, and the
trial exits ``128 + signal``, which NNI records as FAILED. The worker gets SIGTERM if the supervisor itself dies
(NNI's SIGKILL 5 s after a cancel), so it checkpoints and stops instead of running on orphaned.

Standard library only: the supervisor imports no torch, so it costs a few MB beside its worker.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["WORKER_ENV", "is_worker", "supervise"]

#: Set in the worker's environment: the process that does the trial's work.
WORKER_ENV = "AVNAS_TRIAL_WORKER"

_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1


def is_worker() -> bool:
    """Whether this process is a supervised worker (or supervision is switched off with ``AVNAS_TRIAL_WORKER=1``)."""
    return os.environ.get(WORKER_ENV) == "1"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: SIGTERM this process when its parent dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def supervise(command: Sequence[str], run_link: Path | None = None, trial_log: Path | None = None) -> int:
    """Run ``command`` as the worker and return the trial's exit code.

    Parameters
    ----------
    command : sequence of str
        The worker's command line (it runs with ``AVNAS_TRIAL_WORKER=1``).
    run_link : Path, optional
        Where the worker links its run directory (``$NNI_OUTPUT_DIR/run``): named in the report of a kill.
    trial_log : Path, optional
        NNI's log of the trial (``$NNI_OUTPUT_DIR/trial.log``): the report of a kill is appended to it too.

    Returns
    -------
    int
        The worker's exit code; ``128 + N`` when signal N killed it from outside. A worker that died of a signal
        the supervisor passed on makes the supervisor die of the same signal (what NNI saw before supervision).
    """
    passed_on: list[int] = []
    children: list[subprocess.Popen] = []

    def pass_on(signum: int, _frame: object) -> None:
        passed_on.append(signum)
        for child in children:
            child.send_signal(signum)

    for signum in _FORWARDED:  # before the worker starts, so that no signal falls between the two
        signal.signal(signum, pass_on)
    child = subprocess.Popen(list(command), env={**os.environ, WORKER_ENV: "1"}, preexec_fn=_die_with_parent)
    children.append(child)
    for signum in passed_on:
        child.send_signal(signum)
    code = child.wait()
    if code >= 0:
        return code
    killer = -code
    if killer in passed_on:  # NNI's cancel or stop: end as the worker did
        signal.signal(killer, signal.SIG_DFL)
        os.kill(os.getpid(), killer)
        return 128 + killer
    name = signal.Signals(killer).name
    where = ""
    if run_link is not None and run_link.exists():
        where = (f"; its run directory {run_link.resolve()} keeps the last finished epoch: rerun this configuration "
                 "(or `nnictl resume` the experiment) to continue it")
    report = (f"avnas trial: the worker (pid {child.pid}) was killed by {name} from outside the trial (the kernel's "
              f"out-of-memory killer or a kill; see `dmesg`){where}")
    print(report, file=sys.stderr, flush=True)
    if trial_log is not None and trial_log.is_file():  # the worker that wrote it is gone
        with trial_log.open("a") as log:
            log.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] ERROR (avnas_nni.supervisor) {report}\n")
    return 128 + killer
