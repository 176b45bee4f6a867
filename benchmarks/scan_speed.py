"""Speed of the package's own selective scan against the plain reference loop (``selective_scan_ref``, as in
mamba-ssm), on CPU against the package's fused numba scan (``selective_scan_fused``, serial whatever ``--threads``)
and, on CUDA with mamba-ssm installed, against mamba-ssm's fused kernel (``selective_scan_fn``).

Run ``python -m benchmarks.scan_speed [--batch 32 --length 25 --dim 1536 --d-state 16 --threads 2
--repeats 5] [--device cpu|cuda] [--json PATH]``. Every scan gets the inputs of a Mamba block's scan (D, z gate,
delta_bias, softplus) and is timed forward + backward (the gradient of a random readout of y to every input,
CUDA synchronised); the runs of the scans alternate, and the median of ``--repeats`` timed runs each, after one
warm-up run, is reported with the ratios reference / own and own / kernel. Other processes on the machine
distort the numbers: run it idle.
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

from avnas_nni.ops.scan import (
    _mamba_scan_fn,
    cuda_scan_available,
    selective_scan_fused,
    selective_scan_ref,
    selective_scan_torch,
)
from avnas_nni.ops.scan_cpu import fused_scan_available
from benchmarks._common import save_json

__all__ = ["main", "run_benchmark"]

logger = logging.getLogger(__name__)


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


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _forward_backward(
    scan: Callable[..., torch.Tensor], inputs: dict[str, torch.Tensor], readout: torch.Tensor
) -> tuple[float, float, torch.Tensor, dict[str, torch.Tensor]]:
    """Wall and CPU seconds of one forward + backward, the output and the input gradients."""
    leaves = {name: tensor.clone().requires_grad_() for name, tensor in inputs.items()}
    _synchronise(readout.device)
    start, start_cpu = time.perf_counter(), time.process_time()
    y = scan(**leaves, delta_softplus=True)
    (y * readout).sum().backward()
    _synchronise(readout.device)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    return seconds, cpu_seconds, y.detach(), {name: leaf.grad for name, leaf in leaves.items()}


def _contenders(device: torch.device) -> dict[str, Callable[..., torch.Tensor]]:
    """The scans to time: own and reference everywhere, the fused numba scan on CPU, mamba-ssm's fused kernel on
    CUDA when it imports."""
    scans = {"own": selective_scan_torch, "reference": selective_scan_ref}
    if device.type == "cpu" and fused_scan_available():
        scans["fused"] = selective_scan_fused
    if device.type == "cuda" and cuda_scan_available():
        scans["kernel"] = _mamba_scan_fn()
    return scans


def run_benchmark(
    batch: int = 32,
    length: int = 25,
    dim: int = 1536,
    d_state: int = 16,
    threads: int = 2,
    repeats: int = 5,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """Time the scans forward + backward and check they agree.

    Returns
    -------
    dict
        Sizes, thread count, device, per-run and median wall seconds of each scan (``own``, ``reference``, on CPU
        ``fused``, on CUDA with mamba-ssm ``kernel``), the ratios reference / own, own / fused and own / kernel,
        median process CPU
        seconds (less sensitive to other load), and the largest absolute difference of each scan's output and
        input gradients from the own scan's.
    """
    target = torch.device(device)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        inputs = {k: v.to(target) for k, v in _make_inputs(batch, length, dim, d_state, seed).items()}
        readout = torch.randn(inputs["u"].shape, generator=torch.Generator().manual_seed(seed + 1)).to(target)
        scans = _contenders(target)
        wall: dict[str, list[float]] = {name: [] for name in scans}
        cpu: dict[str, list[float]] = {name: [] for name in scans}
        outputs: dict[str, tuple[torch.Tensor, dict[str, torch.Tensor]]] = {}
        # interleaved, after one warm-up run each, so that a load change hits every scan alike
        for run in range(repeats + 1):
            for name, scan in scans.items():
                seconds, cpu_seconds, y, grads = _forward_backward(scan, inputs, readout)
                outputs[name] = (y, grads)
                if run:
                    wall[name].append(seconds)
                    cpu[name].append(cpu_seconds)
    finally:
        torch.set_num_threads(previous_threads)
    median = {name: statistics.median(runs) for name, runs in wall.items()}
    own_y, own_grads = outputs["own"]
    result: dict[str, Any] = {
        "batch": batch, "length": length, "dim": dim, "d_state": d_state, "threads": threads, "repeats": repeats,
        "device": torch.cuda.get_device_name(target) if target.type == "cuda" else "cpu",
        "speedup": round(median["reference"] / median["own"], 2),
        "torch": torch.__version__,
    }
    for name in scans:
        label = "own" if name == "own" else name
        result[f"{label}_seconds"] = [round(s, 5) for s in wall[name]]
        result[f"{label}_median_seconds"] = round(median[name], 5)
        result[f"{label}_median_cpu_seconds"] = round(statistics.median(cpu[name]), 5)
        if name != "own":
            y, grads = outputs[name]
            result[f"{label}_max_abs_diff_output"] = (y - own_y).abs().max().item()
            result[f"{label}_max_abs_diff_grad"] = max((grads[k] - own_grads[k]).abs().max().item() for k in grads)
    if "kernel" in scans:
        result["own_over_kernel"] = round(median["own"] / median["kernel"], 2)
    if "fused" in scans:
        result["own_over_fused"] = round(median["own"] / median["fused"], 2)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scan_speed", description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32, help="batch size")
    parser.add_argument("--length", type=int, default=25, help="sequence length L (frames: 25)")
    parser.add_argument("--dim", type=int, default=1536, help="scanned channels (Mamba d_inner at d=768: 1536)")
    parser.add_argument("--d-state", type=int, default=16, help="state size N")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per scan (after one warm-up)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the scans run (cuda: also mamba-ssm's kernel when it imports)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("batch", "length", "dim", "d_state", "threads", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")
    result = run_benchmark(args.batch, args.length, args.dim, args.d_state, args.threads, args.repeats, args.seed,
                           args.device)
    print(
        f"selective scan, forward + backward: batch {result['batch']}, L {result['length']}, "
        f"dim {result['dim']}, N {result['d_state']}, on {result['device']}, {result['threads']} threads, "
        f"median of {result['repeats']}"
    )
    names = {"own": "own scan (selective_scan_torch)", "reference": "reference loop (selective_scan_ref)",
             "fused": "fused CPU scan (selective_scan_fused)", "kernel": "mamba-ssm kernel (selective_scan_fn)"}
    for key, label in names.items():
        if f"{key}_median_seconds" in result:
            print(f"{label:<38}{result[f'{key}_median_seconds']:.4f} s "
                  f"(CPU time of the process {result[f'{key}_median_cpu_seconds']:.4f} s)")
    print(f"ratio reference / own                 {result['speedup']:.2f}x")
    if "own_over_fused" in result:
        print(f"ratio own / fused                     {result['own_over_fused']:.2f}x")
    if "own_over_kernel" in result:
        print(f"ratio own / kernel                    {result['own_over_kernel']:.2f}x")
    elif args.device == "cuda":
        print("mamba-ssm's kernel is not available (mamba-ssm or its selective_scan_cuda extension missing)")
    for key in ("reference", "fused", "kernel"):
        if f"{key}_max_abs_diff_output" in result:
            print(f"max |{key} - own|: output {result[f'{key}_max_abs_diff_output']:.2e}, "
                  f"gradients {result[f'{key}_max_abs_diff_grad']:.2e}")
    save_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
