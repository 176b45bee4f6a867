"""The thread policy (avnas_nni.threads): explicit > OMP_NUM_THREADS > work size; PASSIVE OpenMP wait policy
in effect when avnas_nni is imported before torch; freed memory kept in the process (avnas_nni.allocator)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from avnas_nni import threads
from avnas_nni.threads import SMALL_WORK, apply_thread_policy, batch_work, plan_threads, prepare_environment

ROOT = Path(__file__).resolve().parents[1]


def test_plan_order_of_precedence(monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    monkeypatch.setattr(threads, "free_cores", lambda cores=None: 6)
    env = {"OMP_NUM_THREADS": "3"}
    assert plan_threads(5, work=10, environ=env).intra_op == 5  # --threads wins
    assert plan_threads(None, work=10, environ=env).intra_op == 3  # then OMP_NUM_THREADS
    assert plan_threads(None, work=10, environ={}).intra_op == 1  # small work: one thread
    big = plan_threads(None, work=SMALL_WORK * 4, environ={})
    assert big.intra_op == 6 and "6 of 8" in big.reason  # large work: the free cores
    assert plan_threads(None, work=None, environ={}).intra_op == 6
    assert plan_threads(None, environ={}).wait_policy == "PASSIVE"
    assert plan_threads(None, environ={"OMP_WAIT_POLICY": "active"}).wait_policy == "ACTIVE"
    with pytest.raises(ValueError, match="positive"):
        plan_threads(0)


def test_free_cores_subtracts_load(monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (1.2, 0.0, 0.0))
    assert threads.free_cores(4) == 3
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 0.0, 0.0))
    assert threads.free_cores(2) == 1  # never below one
    assert 1 <= threads.available_cores() <= (os.cpu_count() or 1)


def test_prepare_environment_keeps_a_user_choice():
    env = {}
    prepare_environment(env)
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    prepare_environment(env)
    assert env["OMP_WAIT_POLICY"] == "ACTIVE"


def test_embedded_batch_is_small_work(tiny_data):
    assert batch_work(tiny_data, 32, 4) == 32 * 6 * 12 * 12
    assert 32 * 6 * 25 * 48 < SMALL_WORK  # the embedded data at the quick profile's batch: one thread


def test_apply_sets_torch_threads():
    import torch

    before = torch.get_num_threads()
    try:
        plan = apply_thread_policy(2)
        assert plan.intra_op == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def _spin_count(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update(OMP_DISPLAY_ENV="verbose", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    line = next((x for x in out.stderr.splitlines() if "GOMP_SPINCOUNT" in x), None)
    if line is None:
        pytest.skip("torch's OpenMP runtime is not GNU libgomp (no GOMP_SPINCOUNT to read)")
    return line.split("=")[1].strip().strip("'")


def test_passive_wait_policy_takes_effect():
    """libgomp spins 300000 times before sleeping by default; with the package imported first it must not spin."""
    assert _spin_count("import avnas_nni, torch; torch.ones(8).sum()") == "0"
    # the control: torch first, the runtime has already read the (unset) policy
    assert _spin_count("import torch, avnas_nni; torch.ones(8).sum()") != "0"


_FAULTS = """
import resource, sys
import numpy as np
if sys.argv[1] == "keep":
    from avnas_nni.allocator import keep_freed_memory
    assert keep_freed_memory()
def step():  # a training step's pattern: many megabyte buffers, all freed at the end
    blocks = [np.ones(2**20, dtype=np.float32) for _ in range(40)]
    del blocks
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
step(); step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_keep_freed_memory_stops_refaulting_the_same_buffers_each_step():
    faults = {}
    for mode in ("plain", "keep"):
        out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, timeout=120,
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert out.returncode == 0, out.stderr
        faults[mode] = int(out.stdout)
    assert faults["plain"] > 10_000  # 2 steps x 40 x 4 MB given back to the system and faulted in again
    assert faults["keep"] < 1_000


def test_apply_thread_policy_keeps_freed_memory(monkeypatch):
    calls = []
    monkeypatch.setattr(threads, "keep_freed_memory", lambda: calls.append(1))
    import torch

    before = torch.get_num_threads()
    try:
        apply_thread_policy(1)
    finally:
        torch.set_num_threads(before)
    assert calls == [1]
