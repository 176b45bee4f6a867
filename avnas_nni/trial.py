"""NNI trial entry point: one whole search (or fixed-architecture training) + fine-tune + test per trial.

NNI 3.0 cannot launch NAS from ``nnictl`` (see the README), so a comparison of strategies is an NNI
experiment whose search space *is* the comparison — ``{strategy, bits, seed, …}`` — and whose trial
command is ``python -m avnas_nni.trial``. Each trial:

* reads its parameters with ``nni.get_next_parameter()`` (any :class:`~avnas_nni.pipeline.RunSettings`
  field, plus ``profile``; ``arch`` makes it a fixed-architecture training), on top of the defaults given
  on the command line (``--data``, ``--profile``, ``--set key=value``);
* runs the pipeline into ``$NNI_OUTPUT_DIR/run`` (a normal run directory, plus ``model.onnx``);
* reports one intermediate result per epoch — validation mAP@100, search epochs then fine-tune epochs —
  and a final dict metric: ``default`` = test mAP@100, with val mAP, strategy, bits, seed, params,
  timings and the architecture in compact form (the real configuration, since the parameter id the web UI
  shows can be wrong under concurrency).

NNI's sequential engine, which runs the search inside this process, swaps NNI's trial channel and
parameters for its own while it runs; the reporter here keeps the trial's own channel and parameters,
so every report reaches the trial that NNI launched. Messages stay small (floats and short strings).

Faults (docs/faults.md): the trial's work runs in a worker process under :mod:`avnas_nni.supervisor`, so a worker
killed from outside (the OOM killer) leaves a FAILED trial with its reason in ``trial.stderr``. Under NNI's local
training service the run directory is keyed by the trial's settings (``EXPERIMENT/avnas-runs/KEY``, linked as
``$NNI_OUTPUT_DIR/run``): a configuration issued again — by ``nnictl resume``, or a tuner proposing it twice —
continues that run from its last finished epoch, or reports its finished result without training again.

Outside NNI (no ``NNI_PLATFORM``) the same command runs with the defaults and prints the final metric.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

from avnas_nni.supervisor import is_worker, supervise

if __name__ == "__main__" and not is_worker():
    # The supervisor: this command again as the worker. Before the imports below, so it holds no torch.
    _output_dir = os.environ.get("NNI_OUTPUT_DIR")
    sys.exit(supervise([sys.executable, "-m", "avnas_nni.trial", *sys.argv[1:]],
                       run_link=Path(_output_dir) / "run" if _output_dir else None,
                       trial_log=Path(_output_dir) / "trial.log" if _output_dir else None))

import nni
import nni.trial
import torch
from nni.runtime.env_vars import trial_env_vars
from nni.runtime.trial_command_channel import get_default_trial_command_channel

from avnas_nni.console import quiet_libraries
from avnas_nni.errors import AVNASError, SettingsError
from avnas_nni.pipeline import (
    PROFILES,
    RunSettings,
    load_run_model,
    reusable_run,
    run_method,
    run_search,
    run_train,
)
from avnas_nni.runs import RunDir, RunInUseError, RunLock, run_key
from avnas_nni.threads import apply_thread_policy, batch_work

__all__ = ["TrialReporter", "settings_from_parameters", "compact_arch", "export_onnx", "trial_run_dir", "main"]

logger = logging.getLogger(__name__)

#: Seconds a trial waits for its keyed run directory while another trial holds it.
LOCK_WAIT_S = 120.0

#: Parameter names the shipped configs may use for a RunSettings field.
ALIASES = {"code_bits": "bits", "epochs": "search_epochs"}


class TrialReporter:
    """Reports to the NNI trial this process runs, whatever NNI's in-process engine does meanwhile.

    Captures the trial command channel and the trial's parameter record at construction (call it right
    after ``nni.get_next_parameter()``).
    """

    def __init__(self) -> None:
        self.channel = get_default_trial_command_channel()
        self.record = nni.trial._params  # the record get_next_parameter() received (None outside NNI)
        self.sequence = 0

    @property
    def parameter_id(self) -> int | None:
        return self.record["parameter_id"] if self.record else None

    def intermediate(self, value: float, **extra: float) -> None:
        """One intermediate result, numbered in order: a float, or with ``extra`` a dict whose ``default`` is
        ``value`` (the web UI charts ``default`` and lists the rest)."""
        metric: float | dict[str, float] = float(value)
        if extra:
            metric = {"default": float(value), **{k: float(v) for k, v in extra.items()}}
        self.channel.send_metric(type="PERIODICAL", parameter_id=self.parameter_id,
                                 trial_job_id=trial_env_vars.NNI_TRIAL_JOB_ID, sequence=self.sequence,
                                 value=metric)
        self.sequence += 1

    def final(self, metric: dict[str, Any]) -> None:
        """The final result: a dict whose ``default`` is a float."""
        self.channel.send_metric(type="FINAL", parameter_id=self.parameter_id,
                                 trial_job_id=trial_env_vars.NNI_TRIAL_JOB_ID, sequence=0, value=metric)


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def settings_from_parameters(parameters: dict[str, Any], defaults: dict[str, Any]) -> tuple[RunSettings, str]:
    """``(settings, command)`` of a trial: profile defaults, then ``defaults``, then the trial's parameters.

    ``command`` is ``"method"`` when a ``method`` (:mod:`avnas_nni.methods`) is given, ``"train"`` when an
    ``arch`` is, else ``"search"``. Unknown names are refused.
    """
    merged = {ALIASES.get(k, k): v for k, v in {**defaults, **(parameters or {})}.items()}
    profile = merged.pop("profile", "quick")
    command = "method" if merged.get("method") else "train" if merged.get("arch") else "search"
    if command != "search":
        merged["strategy"] = "fixed"
    try:
        return RunSettings.resolve(profile, **merged), command
    except SettingsError as exc:  # RunSettings.resolve's check, said of the trial's parameters
        raise SettingsError(f"trial parameters: {exc}") from None


def compact_arch(arch: dict[str, Any]) -> str:
    """An architecture in one short line: ``visual: M1=FFN U1=Skip …; audio: …; I1=… F=… T=…``."""
    groups: dict[str, list[str]] = {}
    for label, choice in arch.items():
        scope, _, cell = label.rpartition("/")
        value = "+".join(map(str, choice)) if isinstance(choice, list | tuple) else str(choice)
        groups.setdefault(scope, []).append(f"{cell}={value}")
    return "; ".join((f"{scope}: " if scope else "") + " ".join(cells) for scope, cells in groups.items())


def export_onnx(run: str | Path) -> Path:
    """Export a finished run's network to ``run/model.onnx`` (inputs ``visual``, ``audio``; output ``codes``)."""
    model, _, record = load_run_model(run)
    model.eval()
    length, dim = record.input_shape if record.is_method else (model.length, model.dim)
    inputs = tuple(torch.zeros(1, length, dim) for _ in range(2))
    path = RunDir(run).onnx_path
    axes = {name: {0: "batch"} for name in ("visual", "audio", "codes")}
    with warnings.catch_warnings():  # shape checks in the ops are constants for the traced shapes
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(model, inputs, str(path), dynamo=False, input_names=["visual", "audio"],
                          output_names=["codes"], dynamic_axes=axes, opset_version=17)
    return path


def _experiment_dir(output_dir: Path) -> Path | None:
    """The experiment's directory above a trial's output directory (local training service:
    ``EXPERIMENT/environments/ENV/trials/TRIAL``), or None where NNI lays it out otherwise."""
    experiment = os.environ.get("NNI_EXP_ID")
    return next((parent for parent in output_dir.parents if experiment and parent.name == experiment), None)


def trial_run_dir(settings: RunSettings, output_dir: str | os.PathLike | None = None,
                  wait_s: float = LOCK_WAIT_S) -> Path:
    """Where a trial with ``settings`` runs: ``EXPERIMENT/avnas-runs/KEY`` (:func:`~avnas_nni.runs.run_key`),
    linked as ``OUTPUT/run``, when the experiment directory is known; else ``OUTPUT/run``; ``runs/trial`` outside
    NNI. A keyed directory that another live trial holds (a stopped experiment's worker still ending, or the same
    configuration proposed twice at once) is waited for up to ``wait_s`` seconds, then left to it: this trial then
    runs in ``OUTPUT/run``."""
    output = output_dir or os.environ.get("NNI_OUTPUT_DIR")
    if not output:
        return Path("runs") / "trial"
    own = Path(output) / "run"
    experiment = _experiment_dir(Path(output).resolve())
    if experiment is None or (own.exists() and not own.is_symlink()):  # a trial started before keyed directories
        return own
    keyed = experiment / "avnas-runs" / run_key(asdict(settings))
    deadline = time.monotonic() + wait_s
    while True:
        try:
            RunLock(keyed).acquire().release()
            break
        except RunInUseError as exc:
            if time.monotonic() >= deadline:
                logger.warning("%s; running this trial in %s instead", exc, own)
                return own
            time.sleep(1.0)
    keyed.mkdir(parents=True, exist_ok=True)
    own.parent.mkdir(parents=True, exist_ok=True)
    if not own.is_symlink():
        own.symlink_to(os.path.relpath(keyed, own.parent), target_is_directory=True)
    return keyed


def _run(command: str, settings: RunSettings, out: Path, on_epoch: Any) -> dict[str, Any]:
    """The trial's run in ``out``: read back when finished, continued when it holds an unfinished run."""
    metrics, resume = reusable_run(out, settings, "reusing a finished trial run")
    if metrics is not None:
        logger.info("%s: finished by an earlier trial of this configuration; reporting its result", out)
        return metrics
    if resume:
        logger.info("%s: continuing the unfinished run of an earlier trial of this configuration", out)
    return {"search": run_search, "train": run_train, "method": run_method}[command](
        settings, out, resume=resume, on_epoch=on_epoch)


def _next_parameters() -> dict[str, Any]:
    """This trial's parameters from NNI (an empty dict outside NNI)."""
    return nni.get_next_parameter() or {}


def _defaults(args: argparse.Namespace) -> dict[str, Any]:
    defaults: dict[str, Any] = {"data": args.data, "profile": args.profile}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SettingsError(f"--set: expected key=value, got {item!r}")
        defaults[key] = _parse_value(value)
    return defaults


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m avnas_nni.trial", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="embedded", help="dataset config for every trial (default: embedded)")
    parser.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="another default setting for every trial (JSON values), e.g. --set finetune_epochs=2")
    parser.add_argument("--out", type=Path, help="run directory (default: $NNI_OUTPUT_DIR/run, else runs/trial)")
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX export")
    parser.add_argument("--threads", type=int, help="torch threads (default: avnas_nni.threads' policy: 1 for small "
                                                    "networks, else one per free core); with trialConcurrency > 1 "
                                                    "on a CPU, cores / concurrency")
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads: expected a positive integer, got {args.threads}")
    quiet_libraries()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", message=".*is found to be not a nn.Module.*")
    parameters = _next_parameters()
    reporter = TrialReporter()
    try:
        settings, command = settings_from_parameters(parameters, _defaults(args))
        apply_thread_policy(args.threads, batch_work(settings.data, settings.batch_size, settings.n_neg))
        out = args.out or trial_run_dir(settings)
        logger.info("trial %s: %s with %s in %s", trial_env_vars.NNI_TRIAL_JOB_ID, command, parameters, out)

        def report(row: dict[str, Any]) -> None:
            # search epochs of α strategies also carry the mean normalised cell entropy: the search converging
            extra = {"alpha_entropy": row["alpha_entropy"]} if row.get("alpha_entropy") is not None else {}
            if row.get("val_mAP") is not None:
                reporter.intermediate(row["val_mAP"], **extra)

        metrics = _run(command, settings, out, report)
        onnx_path = None if args.no_onnx else export_onnx(out)
    except AVNASError as exc:  # bad parameters or data; anything else is a bug and keeps its traceback
        print(f"avnas trial: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:
        if type(exc).__name__ != "SIGTERMException":
            raise
        # Lightning's SIGTERMException carries no code, which would exit 0: say it and exit as SIGTERM does.
        print(f"avnas trial: terminated (SIGTERM); the last finished epoch is checkpointed in {out}",
              file=sys.stderr)
        return 143
    record = RunDir(out).read_arch_record()
    final = {
        "default": metrics["test_mAP@100"], "val_mAP": metrics["val_mAP@100"],
        "strategy": settings.method or settings.strategy,  # a method trial compares as its method
        "bits": settings.bits, "seed": settings.seed, "params": metrics["params"],
        "search_s": round(metrics.get("search_seconds", 0.0), 1),
        "train_s_per_epoch": round(metrics.get("finetune_seconds_per_epoch",
                                               metrics.get("train_seconds_per_epoch", 0.0)), 2),
        "arch": f"method={record.method}" if record.is_method else compact_arch(record.arch),
    }
    if settings.arch:
        final["arch_name"] = str(settings.arch)
    reporter.final(final)
    print(json.dumps({**final, "run": str(out), "onnx": str(onnx_path) if onnx_path else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
