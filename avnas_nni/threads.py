"""One thread policy for every entry point: the CLI, NNI trials and the benchmark runners.

Two parts, because they take effect at different times:

* :func:`prepare_environment` sets ``OMP_WAIT_POLICY=PASSIVE`` (unless the user set a policy) **before torch
  is imported**: GNU OpenMP (torch's and MKL's runtime on Linux) reads it once, when the library loads.
  Importing :mod:`avnas_nni` calls it, so every entry point of the package gets it for free as long as
  torch is not imported first. With the default (active) policy an idle OpenMP worker spins for ~300k
  iterations before sleeping; on a machine where another process wants the same core, those spins steal
  the core the work needs and the tiny tensor ops of the embedded data slow down by large factors.
* :func:`apply_thread_policy` sets torch's intra-/inter-op threads from the work's size and the cores this
  process may really use (``--threads`` > ``OMP_NUM_THREADS`` > the policy below; affinity mask and cgroup
  CPU quota bound the cores; the 1-minute load average counts cores other processes keep busy).

The policy: small networks (a batch's activations below :data:`SMALL_WORK` elements, e.g. the embedded data
at batch 32) train fastest with **one** intra-op thread, measured on a 2-core machine alone and beside a
busy neighbour (see ``benchmarks/results/threads.md``); larger work gets one thread per free core.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from dataclasses import dataclass

from avnas_nni.allocator import keep_freed_memory

__all__ = ["SMALL_WORK", "ThreadPlan", "available_cores", "free_cores", "plan_threads", "prepare_environment",
           "apply_thread_policy", "batch_work"]

logger = logging.getLogger(__name__)

#: Activation elements per training batch (batch × videos per triplet × m × d) below which one intra-op
#: thread is fastest. The embedded data at batch 32 is 32·6·25·48 ≈ 2.3e5; the paper's d = 768 at batch
#: 128 is 1.5e7. Measured for the small side only: the threshold between is a round guess.
SMALL_WORK = 2**22


@dataclass(frozen=True)
class ThreadPlan:
    """Threads chosen for this process and why (logged at debug level, recorded by benchmarks)."""

    intra_op: int
    inter_op: int
    wait_policy: str
    reason: str


def prepare_environment(environ: dict[str, str] | None = None) -> bool:
    """Default ``OMP_WAIT_POLICY`` to ``PASSIVE`` where the user set none.

    Returns True when the setting can still take effect in this process (torch not imported yet); child
    processes (NNI trials, benchmark workers) inherit it either way.
    """
    environ = os.environ if environ is None else environ
    environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return "torch" not in sys.modules


def _cgroup_quota() -> float | None:
    """CPUs allowed by the cgroup's CFS quota (v2 ``cpu.max`` or v1 ``cfs_quota_us``), None when unlimited."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as handle:
            quota, period = handle.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as q, open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as p:
            quota, period = int(q.read()), int(p.read())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def available_cores() -> int:
    """Cores this process may run on: the affinity mask, bounded by the cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return max(1, cores)


def free_cores(cores: int | None = None) -> int:
    """Available cores minus those other processes keep busy (1-minute load average, rounded), at least 1."""
    cores = available_cores() if cores is None else cores
    try:
        busy = round(os.getloadavg()[0])
    except OSError:
        busy = 0
    return max(1, min(cores, cores - busy))


def plan_threads(threads: int | None = None, work: int | None = None,
                 environ: dict[str, str] | None = None) -> ThreadPlan:
    """The threads for a process: ``threads`` if given, else ``OMP_NUM_THREADS``, else by ``work``.

    Parameters
    ----------
    threads
        An explicit choice (``--threads``); must be ≥ 1.
    work
        Activation elements of one training batch; None when unknown (then: one thread per free core).
    environ
        The environment to read (default ``os.environ``).
    """
    environ = os.environ if environ is None else environ
    policy = environ.get("OMP_WAIT_POLICY", "PASSIVE").upper()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads: expected a positive integer, got {threads}")
        return ThreadPlan(threads, 1, policy, "--threads")
    omp = environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if omp.isdigit() and int(omp) > 0:
        return ThreadPlan(int(omp), 1, policy, "OMP_NUM_THREADS")
    if work is not None and work < SMALL_WORK:
        return ThreadPlan(1, 1, policy, f"small work ({work:.2g} elements per batch): 1 thread measured fastest")
    cores = available_cores()
    free = free_cores(cores)
    return ThreadPlan(free, 1, policy, f"{free} of {cores} available cores free")


def apply_thread_policy(threads: int | None = None, work: int | None = None) -> ThreadPlan:
    """Prepare the environment and set torch's threads by :func:`plan_threads`; returns the plan. Also keeps freed
    memory in the process (:func:`avnas_nni.allocator.keep_freed_memory`), so every entry point gets both.

    Safe to call more than once (a later call with a known ``work`` refines an earlier one); inter-op
    threads can only be set before torch's inter-op pool starts, so a refused change is ignored.
    """
    if not prepare_environment():
        logger.debug("torch was imported before the thread policy: OMP_WAIT_POLICY applies to child processes only")
    plan = plan_threads(threads, work)
    keep_freed_memory()  # the other per-process runtime setting of training runs (see avnas_nni.allocator)
    import torch

    torch.set_num_threads(plan.intra_op)
    try:
        torch.set_num_interop_threads(plan.inter_op)
    except RuntimeError:  # already set, or the inter-op pool already ran work
        pass
    logger.debug("threads: %d intra-op, %d inter-op, OMP_WAIT_POLICY=%s (%s)", plan.intra_op,
                 torch.get_num_interop_threads(), plan.wait_policy, plan.reason)
    return plan


def batch_work(data: str, batch_size: int, n_neg: int = 4) -> int:
    """Activation elements of one training batch: ``batch_size`` triplets × (2 + ``n_neg``) videos × m × d."""
    from avnas_nni.evaluator import load_split

    visual = load_split(data, "val")[0]
    return int(batch_size * (2 + n_neg) * visual.shape[1] * visual.shape[2])
