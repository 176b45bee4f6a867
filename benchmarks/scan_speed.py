"""Speed of the package's own selective scan against a mamba-ssm ``selective_scan_ref``-style loop.

Run ``python -m benchmarks.scan_speed [--batch 32 --length 25 --dim 1536 --d-state 16 --threads 2
--repeats 5] [--json PATH]``. Both scans get the inputs of a Mamba block's scan (D, z gate, delta_bias,
softplus) and are timed forward + backward (the gradient of a random readout of y to every input); the
runs of the two alternate, and the median of ``--repeats`` timed runs each, after one warm-up run, is
reported with the ratio reference / own. Other processes on the machine distort the numbers: run it idle.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from avnas_nni.ops.scan import selective_scan_torch
from benchmarks._common import save_json

__all__ = ["main", "reference_scan", "run_benchmark"]

logger = logging.getLogger(__name__)


def reference_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """The way mamba-ssm's ``selective_scan_ref`` runs the scan (B, C as (batch, N, L)).

    (batch, dim, L, N) tensors for exp(ΔA) and ΔBu, a preallocated state, a Python loop indexing time
    step i of those tensors, one einsum per step with C, the y's stacked at the end.
    """
    dtype_in = u.dtype
    u = u.float()
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias[..., None].float()
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, d_state = u.shape[0], A.shape[0], A.shape[1]
    state = A.new_zeros((batch, dim, d_state))
    delta_a = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    delta_b_u = torch.einsum("bdl,bnl,bdl->bdln", delta, B.float(), u)
    ys = []
    for i in range(u.shape[2]):
        state = delta_a[:, :, i] * state + delta_b_u[:, :, i]
        ys.append(torch.einsum("bdn,bn->bd", state, C[:, :, i].float()))
    y = torch.stack(ys, dim=2)
    out = y if D is None else y + u * D[:, None]
    if z is not None:
        out = out * F.silu(z)
    return out.to(dtype_in)


def _make_inputs(batch: int, length: int, dim: int, d_state: int, seed: int) -> dict[str, torch.Tensor]:
    """A Mamba block's scan inputs at initialisation scale."""
    gen = torch.Generator().manual_seed(seed)
    return {
        "u": torch.randn(batch, dim, length, generator=gen),
        "delta": 0.1 * torch.randn(batch, dim, length, generator=gen),
        "A": -torch.arange(1, d_state + 1, dtype=torch.float32).repeat(dim, 1),
        "B": torch.randn(batch, d_state, length, generator=gen),
        "C": torch.randn(batch, d_state, length, generator=gen),
        "D": torch.ones(dim),
        "z": torch.randn(batch, dim, length, generator=gen),
        "delta_bias": torch.log(torch.expm1(torch.full((dim,), 0.01))),
    }


def _forward_backward(
    scan: Callable[..., torch.Tensor], inputs: dict[str, torch.Tensor], readout: torch.Tensor
) -> tuple[float, float, torch.Tensor, dict[str, torch.Tensor]]:
    """Wall and CPU seconds of one forward + backward, the output and the input gradients."""
    leaves = {name: tensor.clone().requires_grad_() for name, tensor in inputs.items()}
    start, start_cpu = time.perf_counter(), time.process_time()
    y = scan(**leaves, delta_softplus=True)
    (y * readout).sum().backward()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    return seconds, cpu_seconds, y.detach(), {name: leaf.grad for name, leaf in leaves.items()}


def run_benchmark(
    batch: int = 32,
    length: int = 25,
    dim: int = 1536,
    d_state: int = 16,
    threads: int = 2,
    repeats: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Time both scans forward + backward and check they agree.

    Returns
    -------
    dict
        Sizes, thread count, per-run and median wall seconds of each scan, the ratio reference / own,
        median process CPU seconds (less sensitive to other load), and
        the largest absolute difference of the outputs and of the input gradients.
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        inputs = _make_inputs(batch, length, dim, d_state, seed)
        readout = torch.randn(inputs["u"].shape, generator=torch.Generator().manual_seed(seed + 1))
        own_runs, ref_runs, own_cpu, ref_cpu = [], [], [], []
        # interleaved, after one warm-up run each, so that a load change hits both scans alike
        for run in range(repeats + 1):
            own_seconds, own_cpu_seconds, own_y, own_grads = _forward_backward(selective_scan_torch, inputs, readout)
            ref_seconds, ref_cpu_seconds, ref_y, ref_grads = _forward_backward(reference_scan, inputs, readout)
            if run:
                own_runs.append(own_seconds)
                ref_runs.append(ref_seconds)
                own_cpu.append(own_cpu_seconds)
                ref_cpu.append(ref_cpu_seconds)
    finally:
        torch.set_num_threads(previous_threads)
    own_median = statistics.median(own_runs)
    ref_median = statistics.median(ref_runs)
    return {
        "batch": batch,
        "length": length,
        "dim": dim,
        "d_state": d_state,
        "threads": threads,
        "repeats": repeats,
        "own_seconds": [round(s, 4) for s in own_runs],
        "reference_seconds": [round(s, 4) for s in ref_runs],
        "own_median_seconds": round(own_median, 4),
        "reference_median_seconds": round(ref_median, 4),
        "speedup": round(ref_median / own_median, 2),
        "own_median_cpu_seconds": round(statistics.median(own_cpu), 4),
        "reference_median_cpu_seconds": round(statistics.median(ref_cpu), 4),
        "max_abs_diff_output": (own_y - ref_y).abs().max().item(),
        "max_abs_diff_grad": max((own_grads[k] - ref_grads[k]).abs().max().item() for k in own_grads),
        "torch": torch.__version__,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scan_speed", description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32, help="batch size")
    parser.add_argument("--length", type=int, default=25, help="sequence length L (frames: 25)")
    parser.add_argument("--dim", type=int, default=1536, help="scanned channels (Mamba d_inner at d=768: 1536)")
    parser.add_argument("--d-state", type=int, default=16, help="state size N")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per scan (after one warm-up)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("batch", "length", "dim", "d_state", "threads", "repeats"):
        if getattr(args, name) < 1:
            flag = name.replace("_", "-")
            print(f"scan_speed: --{flag} must be >= 1, got {getattr(args, name)}", file=sys.stderr)
            return 2
    result = run_benchmark(args.batch, args.length, args.dim, args.d_state, args.threads, args.repeats, args.seed)
    print(
        f"selective scan, forward + backward: batch {result['batch']}, L {result['length']}, "
        f"dim {result['dim']}, N {result['d_state']}, {result['threads']} threads, "
        f"median of {result['repeats']}"
    )
    print(
        f"own scan (selective_scan_torch)   {result['own_median_seconds']:.3f} s "
        f"(CPU time of the process {result['own_median_cpu_seconds']:.3f} s)"
    )
    print(
        f"selective_scan_ref-style loop     {result['reference_median_seconds']:.3f} s "
        f"(CPU time of the process {result['reference_median_cpu_seconds']:.3f} s)"
    )
    print(f"ratio reference / own             {result['speedup']:.2f}x")
    print(
        f"max |own - reference|: output {result['max_abs_diff_output']:.2e}, "
        f"gradients {result['max_abs_diff_grad']:.2e}"
    )
    save_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
