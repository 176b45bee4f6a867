"""The run directory: the one format every face (CLI, NNI trial, benchmark) reads and writes.

::

    RUN/
      settings.json      how the run was made (strategy, data, space settings, seeds, epochs)
      arch.json          the space settings, the choice per cell and the final α probabilities
      model.safetensors  the fine-tuned weights W**
      metrics.json       val/test mAP@K, P@K, R@K, parameters, timings
      history.csv        per-epoch loss and val mAP of both stages (and the mean cell entropy of search epochs)
      alpha_history.csv  softmax(α) per cell and candidate after each search epoch (epoch 0: the initialisation)
      alpha_history.png  the same as a figure, one panel per cell
      pruned_init.safetensors  the pruned network with the supernet's weights W* (fine-tuning starts here)
      pruned_init_RULE.safetensors  the same for another pruning rule sharing this search (``also_prune``)
      model.onnx         the final network as ONNX (NNI trials)
      SPLIT_ap.npy       per-query AP@100 of a split (a benchmark's cache)
      run.log            the log
      checkpoints/       Lightning checkpoints of each stage (for --resume): last.ckpt, and last.prev.ckpt,
                         the epoch before, kept until the new last.ckpt is complete
      .lock              while a process writes the run: its pid (see :class:`RunLock`)

Files are written to a temporary name and renamed, so a killed run never leaves a half-written file. No file
name of a run is spelled outside this module (``tests/test_runs_format.py`` checks): use :class:`RunDir`.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import logging
import os
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors

from avnas_nni.errors import AVNASError

__all__ = ["ArchRecord", "LAST_CHECKPOINT", "PREVIOUS_CHECKPOINT", "BEST_CHECKPOINT", "RunDir", "RunError",
           "RunInUseError", "RunLock", "run_key", "atomic_write_bytes", "atomic_write_text", "read_json",
           "save_weights", "load_weights", "write_error"]

logger = logging.getLogger(__name__)


class RunError(AVNASError):
    """A run directory or architecture file that cannot be used."""


class RunInUseError(RunError):
    """The run directory is locked by another live process (:class:`RunLock`); nothing was written."""


def write_error(path: Path, exc: OSError, what: str = "file") -> RunError:
    """A one-line :class:`RunError` for an ``OSError`` while writing ``path`` (disk full, read-only, …)."""
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    hint = "; free some space and rerun with --resume" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return RunError(f"{path}: cannot write {what} ({reason}){hint}")


def _write_fd(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` and flush it to disk (the fault tests patch this to fail or die mid-write)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.fsync(fd)


def atomic_write_bytes(path: Path, data: bytes, keep_previous: Path | None = None, what: str = "file") -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory, fsync and a rename.

    ``path`` is at every moment either its old complete content or the new one. With ``keep_previous``, the old
    content (if any) is first linked to that name, so the file before the new one survives it. An ``OSError``
    (e.g. ``ENOSPC``) leaves ``path`` as it was and becomes a one-line :class:`RunError` naming it (and ``what``
    it holds).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        try:
            os.fchmod(fd, 0o644)  # mkstemp's 0600 would otherwise stick to the published file
            _write_fd(fd, data)
        finally:
            os.close(fd)
        if keep_previous is not None and path.is_file():
            link = Path(f"{tmp}.prev")
            os.link(path, link)  # a second name for the old inode, then renamed over the previous previous
            os.replace(link, keep_previous)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise write_error(path, exc, what) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and a rename."""
    atomic_write_bytes(path, text.encode())


def read_json(path: Path, what: str) -> dict[str, Any]:
    """Read a JSON object, with a one-line :class:`RunError` naming the file on any problem."""
    try:
        value = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise RunError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunError(f"{path}: not a readable JSON {what} ({exc})") from None
    if not isinstance(value, dict):
        raise RunError(f"{path}: expected a JSON object as {what}, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class ArchRecord:
    """``arch.json``, typed. Two kinds share the file:

    * a **network** of the search space (searched, pruned or fixed): ``space`` (the space's constructor arguments:
      ``dim``, ``length``, ``bits``, ``modalities``, …), ``arch`` (the choice per cell; a list of two names for a
      top-2 pruned cell), ``strategy``, ``prune``, ``probs``; searches add ``init_probs``, ``cell_diagnostics``,
      ``search_summary``, ``search_warning``, ``alpha_lr``, ``search_history``, ``search_seconds`` and
      ``search_details``, a shared search ``search_from``, ``also_pruned``;
    * a **video-hashing method** (:mod:`avnas_nni.methods`): ``method`` (its name), ``kwargs`` (its constructor
      arguments: ``dim``, ``length``, ``bits``, …), ``citation``.

    ``raw`` is the whole JSON object; the properties read what both kinds have in common.
    """

    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def is_method(self) -> bool:
        """Whether the run is a video-hashing method's (else a network of the search space)."""
        return "method" in self.raw

    @property
    def method(self) -> str | None:
        return self.raw.get("method")

    @property
    def arch(self) -> dict[str, Any] | None:
        """The choice per cell (networks only)."""
        return self.raw.get("arch")

    @property
    def build_kwargs(self) -> dict[str, Any]:
        """What rebuilds the network: the method's constructor arguments, or the space's."""
        return dict(self.raw.get("kwargs" if self.is_method else "space", {}))

    @property
    def input_shape(self) -> tuple[int | None, int | None]:
        """(m, d): frames per video and feature size the network was built for (None where unrecorded)."""
        kwargs = self.build_kwargs
        return kwargs.get("length"), kwargs.get("dim")

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)


#: Checkpoint file names of a stage directory: the last finished epoch, the epoch before it (kept until the new
#: last one is complete), the best validation epoch (fine-tuning).
LAST_CHECKPOINT, PREVIOUS_CHECKPOINT, BEST_CHECKPOINT = "last.ckpt", "last.prev.ckpt", "best.ckpt"


class RunDir:
    """Paths and readers/writers of one run directory."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    settings_path = property(lambda self: self.path / "settings.json")
    arch_path = property(lambda self: self.path / "arch.json")
    model_path = property(lambda self: self.path / "model.safetensors")
    metrics_path = property(lambda self: self.path / "metrics.json")
    history_path = property(lambda self: self.path / "history.csv")
    log_path = property(lambda self: self.path / "run.log")
    alpha_history_path = property(lambda self: self.path / "alpha_history.csv")
    alpha_plot_path = property(lambda self: self.path / "alpha_history.png")
    onnx_path = property(lambda self: self.path / "model.onnx")
    lock_path = property(lambda self: self.path / ".lock")  # held by :class:`RunLock` while a process writes

    def pruned_init_path(self, rule: str | None = None) -> Path:
        """The pruned network with the supernet's weights: this run's own rule, or another ``rule``'s."""
        return self.path / ("pruned_init.safetensors" if rule is None else f"pruned_init_{rule}.safetensors")

    def query_ap_path(self, split: str) -> Path:
        """Per-query AP cache of ``split``."""
        return self.path / f"{split}_ap.npy"

    def checkpoints(self, stage: str) -> Path:
        """Checkpoint directory of a stage (``search`` or ``finetune``)."""
        return self.path / "checkpoints" / stage

    def last_checkpoint(self, stage: str) -> Path | None:
        """The last finished epoch's checkpoint of a stage, if any."""
        last = self.checkpoints(stage) / LAST_CHECKPOINT
        return last if last.is_file() else None

    def best_checkpoint(self, stage: str) -> Path:
        """The best validation epoch's checkpoint of a stage (it may not exist)."""
        return self.checkpoints(stage) / BEST_CHECKPOINT

    def has_finished_work(self) -> bool:
        """Whether the run finished anything worth keeping: an epoch's checkpoint, pruned or final weights, metrics.

        ``settings.json``, ``arch.json`` (a fixed architecture's is written before its first epoch), ``run.log``
        and ``.lock`` do not count: a run that failed before its first finished epoch may be taken over.
        """
        if not self.path.is_dir():
            return False
        return (self.metrics_path.exists() or self.model_path.exists()
                or any(self.path.glob("pruned_init*.safetensors"))
                or any((self.path / "checkpoints").glob("*/*.ckpt")))

    def write_json(self, path: Path, value: dict[str, Any]) -> Path:
        """Write ``value`` as JSON to ``path`` (one of this run's ``*_path``), atomically."""
        atomic_write_text(path, json.dumps(value, indent=2, sort_keys=False, default=_json_default) + "\n")
        return path

    def write_settings(self, value: dict[str, Any]) -> Path:
        return self.write_json(self.settings_path, value)

    def write_arch(self, value: dict[str, Any]) -> Path:
        return self.write_json(self.arch_path, value)

    def write_metrics(self, value: dict[str, Any]) -> Path:
        return self.write_json(self.metrics_path, value)

    def read_settings(self) -> dict[str, Any]:
        return read_json(self.settings_path, "run settings")

    def read_arch(self) -> dict[str, Any]:
        return read_json(self.arch_path, "architecture")

    def read_arch_record(self) -> ArchRecord:
        """``arch.json`` as an :class:`ArchRecord`."""
        return ArchRecord(self.read_arch())

    def read_metrics(self) -> dict[str, Any]:
        return read_json(self.metrics_path, "metrics")

    def save_model(self, model: torch.nn.Module) -> Path:
        return save_weights(model, self.model_path)

    def load_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return load_weights(model, self.model_path)

    def write_history(self, rows: list[dict[str, Any]]) -> Path:
        atomic_write_text(self.history_path, pd.DataFrame(rows).to_csv(index=False))
        return self.history_path

    def write_alpha_history(self, history: list[dict[str, Any]]) -> Path:
        """Write ``[{"epoch": e, "probs": {cell: {candidate: p}}}, …]`` as ``alpha_history.csv`` (one row per
        epoch, cell and candidate) and its figure ``alpha_history.png``."""
        rows = [{"epoch": item["epoch"], "cell": cell, "candidate": name, "probability": p}
                for item in history for cell, probs in item["probs"].items() for name, p in probs.items()]
        table = pd.DataFrame(rows, columns=["epoch", "cell", "candidate", "probability"])
        atomic_write_text(self.alpha_history_path, table.to_csv(index=False))
        if len(table):
            _plot_alpha_history(table, self.alpha_plot_path)
        return self.alpha_history_path

    def read_alpha_history(self) -> list[dict[str, Any]]:
        """``alpha_history.csv`` back in the form :meth:`write_alpha_history` takes (empty when absent)."""
        if not self.alpha_history_path.is_file():
            return []
        table = pd.read_csv(self.alpha_history_path, dtype={"cell": str, "candidate": str})
        history: dict[int, dict[str, dict[str, float]]] = {}
        for row in table.itertuples(index=False):
            history.setdefault(int(row.epoch), {}).setdefault(row.cell, {})[row.candidate] = float(row.probability)
        return [{"epoch": epoch, "probs": probs} for epoch, probs in sorted(history.items())]


def _plot_alpha_history(table: pd.DataFrame, path: Path) -> None:
    """One panel per cell: each candidate's probability over the search epochs (epoch 0 = initialisation)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = list(dict.fromkeys(table["cell"]))
    cols = min(6, len(cells))
    rows = -(-len(cells) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.0 * rows), squeeze=False, sharex=True)
    for ax, cell in zip(axes.flat, cells, strict=False):
        for name, group in table[table["cell"] == cell].groupby("candidate", sort=False):
            ax.plot(group["epoch"], group["probability"], marker=".", label=str(name))
        ax.set_title(cell, fontsize=8)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=5, loc="upper left", frameon=False)
    for ax in list(axes.flat)[len(cells):]:
        ax.axis("off")
    fig.supxlabel("search epoch (0 = initialisation)", fontsize=8)
    fig.supylabel("softmax(α)", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=110)
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


class RunLock:
    """An exclusive lock on a run directory while one process writes it: ``RUN/.lock`` holding ``pid host``.

    Taken with ``flock``, so the kernel drops it when its process dies, however it dies: a second process is
    refused with the holder's pid while the holder lives; a lock file left by a dead process (SIGKILL, power
    loss) is taken over with a warning naming its pid. Makes the directory if needed; on release removes the lock
    file, and the directory too if this lock made it and it is left empty.

    Parameters
    ----------
    path : path
        The run directory.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.lock_path = RunDir(path).lock_path
        self._fd: int | None = None
        self._made = False

    def acquire(self) -> RunLock:
        self._made = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                pid, _, host = holder.partition(" ")
                raise RunInUseError(f"{self.path}: in use by another avnas process (pid {pid}"
                               f"{f' on {host}' if host else ''}); wait for it, stop it, or choose another --out"
                               ) from None
            # A holder releasing in between unlinks the file we opened: lock the file now at the path instead.
            try:
                same = os.stat(self.lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        stale = os.read(fd, 200).decode(errors="replace").strip()
        if stale:
            logger.warning("%s: took over the stale lock of pid %s (that process is gone)", self.path,
                           stale.split(" ")[0])
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        self.lock_path.unlink(missing_ok=True)  # before unlocking: a waiter then retries on a fresh file
        os.close(self._fd)
        self._fd = None
        if self._made:
            try:
                self.path.rmdir()  # only if empty: a run that wrote nothing leaves nothing
            except OSError:
                pass

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def run_key(settings: dict[str, Any]) -> str:
    """A run directory name that only runs with equal settings share: ``STRATEGY-BITSb-sSEED-HASH``, HASH the first
    12 hex digits of the settings' SHA-256 (NNI trials of one configuration meet in one run directory this way)."""
    text = json.dumps(settings, sort_keys=True, default=_json_default)
    name = settings.get("method") or settings.get("strategy", "run")
    return f"{name}-{settings.get('bits')}b-s{settings.get('seed')}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def save_weights(model: torch.nn.Module, path: Path) -> Path:
    """Save a state dict as safetensors, atomically (:func:`atomic_write_bytes`)."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, save_safetensors(state), what="weights")
    return path


def load_weights(model: torch.nn.Module, path: Path) -> torch.nn.Module:
    """Load safetensors weights into ``model`` (strict), with one-line :class:`RunError` messages."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: weights not found (did the run finish?)")
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise RunError(f"{path}: not a readable safetensors file ({exc})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise RunError(f"{path}: weights do not fit this architecture ({lines[1] if len(lines) > 1 else lines[0]})"
                       ) from None
    return model


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | set):
        return list(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
