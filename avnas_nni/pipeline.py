"""Search → prune → fine-tune → test, writing a run directory (:mod:`avnas_nni.runs`).

This is the workflow the CLI, the NNI trial entry and the benchmarks share: one function per command
(:func:`run_search`, :func:`run_train`, :func:`evaluate_run`), each ending in the same run directory.
"""

from __future__ import annotations

import copy
import functools
import io
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from nni.nas.execution import SequentialExecutionEngine
from nni.nas.space import RawFormatModelSpace
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.utilities.exceptions import SIGTERMException

from avnas_nni.codes import sign_codes
from avnas_nni.data import SPLITS
from avnas_nni.errors import AVNASError, DataError, SettingsError
from avnas_nni.evaluator import HashingModule, encode, load_split, make_evaluator
from avnas_nni.methods import METHODS, MethodModule, build_method
from avnas_nni.metrics import retrieval_report
from avnas_nni.runs import (
    LAST_CHECKPOINT,
    PREVIOUS_CHECKPOINT,
    ArchRecord,
    RunDir,
    RunError,
    RunLock,
    atomic_write_bytes,
    load_weights,
    read_json,
    save_weights,
)
from search_spaces import AVNASSpace, check_sample, get_expert, single_modality
from strategies import (
    ALPHA_STRATEGIES,
    DEFAULT_ALPHA_INIT_STD,
    DEFAULT_ALPHA_TRAVEL,
    STRATEGIES,
    cell_diagnostics,
    indecision_warning,
    make_strategy,
    prune,
    summarise_search,
)

__all__ = ["PROFILES", "EVOLUTIONS", "ALPHA_POLICIES", "RunSettings", "check_settings", "reusable_run",
           "shares_search", "run_search", "run_train", "run_method", "evaluate_run", "build_space", "load_run_model",
           "alpha_kwargs", "validate_inputs"]

logger = logging.getLogger(__name__)


class _QuietNNIWrappers(logging.Filter):
    """Drops NNI's "Model 1 fails to be executed" / "Strategy failed to execute" lines while the exception passing
    through is a user error, a NaN loss or a SIGTERM: the face that catches it says what happened in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        # NNI logs these inside its ``except:`` blocks, so the exception is the one being handled now.
        return not isinstance(sys.exc_info()[1], AVNASError | FloatingPointError | SIGTERMException)


for _name in ("nni.nas.execution.sequential", "nni.nas.strategy.base"):
    logging.getLogger(_name).addFilter(_QuietNNIWrappers())
del _name

#: Called with each finished epoch's history row.
EpochHook = Callable[[dict[str, Any]], None]

#: Videos per inference-time figure (the paper reports 12.5k videos).
INFER_VIDEOS = 12_500


#: Setting bundles. ``quick``: the embedded data on a 2-core CPU in minutes (more, smaller steps: batch 32,
#: fine-tune lr 1e-3; α's learning rate scaled to the few α steps). ``paper``: SPEC §4 — batch 128, 300 + 300
#: epochs, fine-tune Adam 1e-4 (eps 1e-3), each α strategy's own published α settings.
PROFILES: dict[str, dict[str, Any]] = {
    "quick": {"search_epochs": 3, "finetune_epochs": 10, "batch_size": 32, "finetune_lr": 1e-3,
              "alpha_policy": "budget", "evolution": "quick"},
    # The Table 2 runner's CPU budget (all rows within the hour on 2 cores): 2 supernet + 3 fine-tune epochs.
    "bench-quick": {"search_epochs": 2, "finetune_epochs": 3, "batch_size": 32, "finetune_lr": 1e-3,
                    "alpha_policy": "budget", "evolution": "quick"},
    # experiments/compare_quick.yml: every strategy in NNI at 2 supernet + 6 fine-tune epochs.
    "compare-quick": {"search_epochs": 2, "finetune_epochs": 6, "batch_size": 32, "finetune_lr": 1e-3,
                      "alpha_policy": "budget", "evolution": "quick"},
    "paper": {"search_epochs": 300, "finetune_epochs": 300, "batch_size": 128, "finetune_lr": 1e-4,
              "alpha_policy": "paper", "evolution": "paper"},
}

#: SPOS's evolutionary search after supernet training. ``paper``: the SPOS paper's population 50, 20 generations,
#: top-10 parents (up to 1,000 subnets scored); ``quick``: population 10, 4 generations, top-5 (up to 50 subnets),
#: scaled to a CPU budget.
EVOLUTIONS: dict[str, dict[str, int]] = {
    "quick": {"population_size": 10, "generations": 4, "parents": 5},
    "paper": {"population_size": 50, "generations": 20, "parents": 10},
}

#: α policies of the α-based strategies (one-level, DARTS, ProxylessNAS). ``budget``: the same for every one of
#: them — α from N(0, 1e-3²), so no candidate starts ahead, and a learning rate of at least
#: ``alpha_travel / α steps`` (strategies._hooks.AlphaBudgetMixin), so α can leave its start in a short run.
#: ``paper``: each strategy's published settings — AV-NAS's code N(0, 1) with Adam 1e-3, NNI's DARTS and
#: ProxylessNAS N(0, 1e-3²) with 3e-4 — which need hundreds of epochs to move α.
ALPHA_POLICIES = ("budget", "paper")


@dataclass
class RunSettings:
    """Everything that defines a run (saved as ``settings.json``); defaults are the ``quick`` profile."""

    strategy: str = "avnas"
    data: str = "embedded"
    bits: int = 64
    search_epochs: int = 3
    finetune_epochs: int = 10
    batch_size: int = 32
    seed: int = 3346
    device: str = "cpu"
    preset: str = "paper"
    expand: int = 2
    kernel_size: int = 4
    modalities: tuple[str, ...] = ("visual", "audio")
    up_down: bool = True
    search_lr: float = 1e-3
    arc_lr: float | None = None  # None: each strategy's own default (one-level 1e-3, NNI DARTS 3e-4)
    alpha_policy: str = "budget"  # ALPHA_POLICIES
    alpha_travel: float = DEFAULT_ALPHA_TRAVEL  # the budget policy's logits of travel
    keep_best: bool = True  # α strategies: export α* and fine-tune from W* of the best val epoch (paper §4.3)
    evolution: str = "quick"  # SPOS's evolution settings: EVOLUTIONS
    finetune_lr: float = 1e-3
    finetune_eps: float = 1e-3
    tau: float = 0.1
    n_neg: int = 4
    in_batch_negatives: bool = False
    topk: int = 100
    prune: str = "argmax"
    top2_ratio: float = 3.0
    arch: str | None = None
    method: str | None = None  # a video-hashing method of avnas_nni.methods (run_method); its kwargs: extra["method"]
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.modalities = tuple(self.modalities)
        if self.strategy not in STRATEGIES and self.strategy != "fixed":
            raise SettingsError(f"unknown strategy {self.strategy!r}; expected one of {sorted(STRATEGIES)}")
        for name in ("bits", "batch_size", "search_epochs", "finetune_epochs"):
            value, least = getattr(self, name), 1 if name in ("bits", "batch_size") else 0
            if not isinstance(value, int) or value < least:
                raise SettingsError(f"{name}: expected an integer ≥ {least}, got {value!r}")
        if self.evolution not in EVOLUTIONS:
            raise SettingsError(f"evolution: expected one of {sorted(EVOLUTIONS)}, got {self.evolution!r}")
        if self.alpha_policy not in ALPHA_POLICIES:
            raise SettingsError(f"alpha_policy: expected one of {ALPHA_POLICIES}, got {self.alpha_policy!r}")
        if not self.alpha_travel > 0:
            raise SettingsError(f"alpha_travel: expected a positive number of logits, got {self.alpha_travel!r}")
        if self.prune not in ("argmax", "top2"):
            raise SettingsError(f"prune: expected 'argmax' (Arch-1) or 'top2' (Arch-2), got {self.prune!r}")
        if self.device not in ("cpu", "cuda", "auto"):
            raise SettingsError(f"device: expected cpu, cuda or auto, got {self.device!r}")
        if self.method is not None:
            if self.method not in METHODS:
                raise SettingsError(f"method: expected one of {sorted(METHODS)}, got {self.method!r}")
            self.strategy = "fixed"  # a method's run searches nothing

    @classmethod
    def resolve(cls, profile: str = "quick", /, **overrides: Any) -> RunSettings:
        """The one way to assemble settings: the profile's values (:data:`PROFILES`), then ``overrides`` (None
        values ignored, so unset command-line flags fall through). Unknown profiles or field names are a
        :class:`~avnas_nni.errors.SettingsError` naming what is known."""
        if profile not in PROFILES:
            raise SettingsError(f"profile: expected one of {sorted(PROFILES)}, got {profile!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise SettingsError(f"settings: unknown name(s) {unknown}; expected RunSettings fields {sorted(known)}")
        return cls(**{**PROFILES[profile], **{k: v for k, v in overrides.items() if v is not None}})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunSettings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @property
    def accelerator(self) -> str:
        if self.device == "auto":
            return "gpu" if torch.cuda.is_available() else "cpu"
        if self.device == "cuda" and not torch.cuda.is_available():
            raise SettingsError("device: cuda requested but torch sees no CUDA device")
        return "gpu" if self.device == "cuda" else "cpu"


def build_space(settings: RunSettings, **overrides: Any) -> AVNASSpace:
    """The space of a run, with d and m taken from the data."""
    visual, _, _ = load_split(settings.data, "val")
    kwargs = dict(dim=visual.shape[2], length=visual.shape[1], bits=settings.bits, expand=settings.expand,
                  kernel_size=settings.kernel_size, preset=settings.preset, modalities=settings.modalities,
                  up_down=settings.up_down)
    kwargs.update(overrides)
    return AVNASSpace(**kwargs)


class _EpochLog(Callback):
    """Per-epoch loss, val mAP and seconds of a stage, and the architecture probabilities after each search
    epoch (``probs_fn``); its rows live in the checkpoints (resume-safe)."""

    def __init__(self, stage: str, on_epoch: EpochHook | None = None,
                 probs_fn: Callable[[], dict[str, dict[str, float]] | None] | None = None):
        self.stage, self.rows, self._start, self.on_epoch = stage, [], 0.0, on_epoch
        self.probs_fn, self.probs_rows = probs_fn, []

    def on_train_epoch_start(self, trainer, pl_module):
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        metrics = trainer.callback_metrics
        row = {"stage": self.stage, "epoch": trainer.current_epoch,
               "seconds": round(time.perf_counter() - self._start, 3),
               "train_loss": _float(metrics.get("train_loss_epoch")), "val_mAP": _float(metrics.get("val_mAP"))}
        probs = self.probs_fn() if self.probs_fn is not None else None
        if probs:  # plain str keys: NNI's labels are a str subclass a weights-only checkpoint cannot hold
            probs = {str(label): {str(name): float(p) for name, p in cell.items()} for label, cell in probs.items()}
            self.probs_rows.append({"epoch": trainer.current_epoch + 1, "probs": probs})
            row["alpha_entropy"] = summarise_search(cell_diagnostics(probs))["mean_entropy"]
        self.rows.append(row)
        logger.info("%s epoch %d: loss %.4f, val mAP %.4f (%.1f s)", self.stage, row["epoch"],
                    row["train_loss"] or float("nan"), row["val_mAP"] or float("nan"), row["seconds"])
        if self.on_epoch is not None:
            self.on_epoch(dict(row))

    def state_dict(self):
        return {"rows": list(self.rows), "probs_rows": list(self.probs_rows)}

    def load_state_dict(self, state_dict):
        self.rows = list(state_dict.get("rows", []))
        self.probs_rows = list(state_dict.get("probs_rows", []))


class _StageProgress(Callback):
    """One progress bar per stage (Lightning's own draws one per epoch plus validation bars): steps of the whole
    stage with its ETA, and the epoch, last training loss and last val mAP beside it."""

    def __init__(self, stage: str):
        self.stage, self.bar, self.val_map = stage, None, None

    def on_train_start(self, trainer, pl_module):
        from tqdm import tqdm

        per_epoch = trainer.num_training_batches
        total = trainer.max_epochs * per_epoch if per_epoch != float("inf") and trainer.max_epochs > 0 else None
        done = trainer.current_epoch * per_epoch if total else 0  # a resumed run starts part-way
        self.bar = tqdm(total=total, initial=done, desc=self.stage, unit="step", dynamic_ncols=True, leave=True)

    def _show(self, trainer) -> None:
        loss = trainer.callback_metrics.get("train_loss_step", trainer.callback_metrics.get("train_loss"))
        postfix = {"epoch": f"{trainer.current_epoch + 1}/{trainer.max_epochs}"}
        if loss is not None:
            postfix["loss"] = f"{float(loss):.4f}"
        if self.val_map is not None:
            postfix["val_mAP"] = f"{self.val_map:.4f}"
        self.bar.set_postfix(postfix, refresh=False)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.bar is not None:
            self._show(trainer)
            self.bar.update(1)

    def on_train_epoch_end(self, trainer, pl_module):  # after the epoch's validation, as _EpochLog
        value = trainer.callback_metrics.get("val_mAP")
        if self.bar is not None and value is not None:
            self.val_map = float(value)
            self._show(trainer)
            self.bar.refresh()

    def on_train_end(self, trainer, pl_module):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_exception(self, trainer, pl_module, exception):
        self.on_train_end(trainer, pl_module)


def _float(value) -> float | None:
    return None if value is None else float(value)


class _RunCheckpoint(ModelCheckpoint):
    """A checkpoint callback of a run directory: its state's paths are taken relative to the directory, so a run
    directory moved or copied elsewhere resumes with its best score (Lightning drops the score when the checkpoint
    directory changed, and the next epoch then overwrites ``best.ckpt`` whether or not it is better)."""

    @property
    def state_key(self) -> str:  # ModelCheckpoint's own key: checkpoints of either class resume with the other
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("dirpath")
        if saved is not None and self.dirpath is not None and saved != self.dirpath:
            def moved(path: Any) -> Any:
                if isinstance(path, str) and path.startswith(str(saved)):
                    return str(self.dirpath) + path[len(str(saved)):]
                return path

            state_dict = {**{k: moved(v) for k, v in state_dict.items()}, "dirpath": self.dirpath,
                          "best_k_models": {moved(k): v for k, v in (state_dict.get("best_k_models") or {}).items()}}
        super().load_state_dict(state_dict)


def _trainer_kwargs(settings: RunSettings, run: RunDir, stage: str, progress: bool, monitor_best: bool,
                    on_epoch: EpochHook | None = None, probs_fn: Callable[[], Any] | None = None):
    # Two checkpoint callbacks: Lightning 2.6 rewrites a monitoring callback's last.ckpt only in epochs where the
    # best score improved, so "last" would be the best epoch and --resume would restart from there. "best" comes
    # first: it must have taken this epoch's score before last.ckpt stores every callback's state.
    callbacks: list[Callback] = [_EpochLog(stage, on_epoch, probs_fn)]
    if progress:
        callbacks.append(_StageProgress(stage))
    if monitor_best:
        callbacks.append(_RunCheckpoint(dirpath=run.checkpoints(stage), filename="best", monitor="val_mAP",
                                         mode="max", save_top_k=1, enable_version_counter=False,
                                         save_on_train_epoch_end=True))
    callbacks.append(_RunCheckpoint(dirpath=run.checkpoints(stage), filename="last", monitor=None, save_top_k=1,
                                     enable_version_counter=False, save_on_train_epoch_end=True))
    # settings.extra["trainer"]: more Trainer settings (e.g. limit_train_batches for a fixed-steps benchmark)
    return dict(accelerator=settings.accelerator, enable_progress_bar=False, callbacks=callbacks,
                enable_checkpointing=True, deterministic=False, plugins=[_CheckpointIO()],
                **settings.extra.get("trainer", {}))


class _CheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made durable: serialise in memory, write a temporary file, fsync, rename;
    the ``last.ckpt`` being replaced stays as ``last.prev.ckpt``; an ``OSError`` (disk full) is a one-line
    :class:`RunError` naming the checkpoint, with the old one intact."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        path = Path(path)
        keep = path.with_name(PREVIOUS_CHECKPOINT) if path.name == LAST_CHECKPOINT else None
        atomic_write_bytes(path, buffer.getbuffer().tobytes(), keep_previous=keep)


def _resume_path(run: RunDir, stage: str, resume: bool) -> str | None:
    if not resume:
        return None
    last = run.last_checkpoint(stage)
    if last is None:
        return None
    _check_checkpoint(last)
    return str(last)


def _check_checkpoint(path: Path) -> None:
    """Refuse an unreadable checkpoint with one line naming it and the way back to the epoch before."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or "state_dict" not in state or "epoch" not in state:
            raise ValueError("no state_dict/epoch")
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError … on damaged files
        previous = path.with_name(PREVIOUS_CHECKPOINT)
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        fallback = (f"to resume from the epoch before: mv {previous} {path} and rerun with --resume"
                    if previous.is_file() else f"no earlier checkpoint is kept; delete {path.parent} to restart "
                    "this stage")
        raise RunError(f"{path}: damaged checkpoint ({reason}); {fallback}") from None


def _locked(runner: Callable[..., dict]) -> Callable[..., dict]:
    """Hold the run directory's :class:`RunLock` while ``runner(settings, out, ...)`` writes it."""

    @functools.wraps(runner)
    def locked(settings: RunSettings, out: str | Path, *args: Any, **kwargs: Any) -> dict:
        with RunLock(out):
            return runner(settings, out, *args, **kwargs)

    return locked


def _search(settings: RunSettings, run: RunDir, resume: bool, progress: bool, on_epoch: EpochHook | None,
            also_prune: tuple[str, ...] = ()):
    """Stage 1: train the supernet with the strategy and export ({prune rule: sample} for the run's rule and
    ``also_prune``, probs, supernet with W*, epoch rows, seconds, strategy details)."""
    pl.seed_everything(settings.seed, verbose=False)
    space = build_space(settings)
    arc_lr = {} if settings.arc_lr is None else {"arc_learning_rate": settings.arc_lr}
    evolution = EVOLUTIONS[settings.evolution] if settings.strategy == "spos" else {}
    strategy = make_strategy(settings.strategy, seed=settings.seed, **arc_lr, **alpha_kwargs(settings),
                             **{**evolution, **settings.extra.get("strategy", {})})
    probs_fn = strategy.export_probs if settings.strategy in (*ALPHA_STRATEGIES, "enas") else None
    kwargs = _trainer_kwargs(settings, run, "search", progress, monitor_best=False, on_epoch=on_epoch,
                             probs_fn=probs_fn)
    ckpt = _resume_path(run, "search", resume)
    evaluator = make_evaluator(settings.data, max_epochs=settings.search_epochs, batch_size=settings.batch_size,
                               lr=settings.search_lr, tau=settings.tau, n_neg=settings.n_neg, topk=settings.topk,
                               in_batch_negatives=settings.in_batch_negatives, seed=settings.seed,
                               trainer_kwargs=kwargs,
                               fit_kwargs={"ckpt_path": ckpt, "weights_only": True} if ckpt else None)
    started = time.perf_counter()
    strategy(RawFormatModelSpace(space, evaluator), SequentialExecutionEngine())
    search_seconds = time.perf_counter() - started
    epoch_log = next(cb for cb in kwargs["callbacks"] if isinstance(cb, _EpochLog))
    samples = {rule: _export(strategy, rule, settings.top2_ratio) for rule in {settings.prune, *also_prune}}
    probs = strategy.export_probs()
    # Strategies with a search of their own (SPOS's evolution, Random's candidates) account for it here.
    details = strategy.search_record() if callable(getattr(strategy, "search_record", None)) else None
    if probs:  # arch.json's search diagnostics, kept beside the strategy's own record
        details = {**(details or {}), "alpha": _alpha_record(strategy, probs, epoch_log.probs_rows)}
    return samples, probs, strategy.supernet, epoch_log.rows, search_seconds, details


def _alpha_of(record: dict[str, Any], source: str | Path) -> dict[str, Any] | None:
    """The search diagnostics of another run (a shared search): its arch record's, and its α history."""
    if "search_summary" not in record:
        return None
    keys = ("init_probs", "cell_diagnostics", "search_summary", "search_warning", "alpha_lr")
    return {**{k: record.get(k) for k in keys}, "history": RunDir(source).read_alpha_history()}


def alpha_kwargs(settings: RunSettings) -> dict[str, Any]:
    """The α policy's strategy arguments (none for strategies without α)."""
    if settings.strategy not in ALPHA_STRATEGIES:
        return {}
    if settings.alpha_policy == "paper":
        std = 1.0 if settings.strategy == "avnas" else DEFAULT_ALPHA_INIT_STD  # AV-NAS's code; NNI's
        return {"alpha_init_std": std, "alpha_travel": None, "keep_best": settings.keep_best}
    return {"alpha_init_std": DEFAULT_ALPHA_INIT_STD, "alpha_travel": settings.alpha_travel,
            "keep_best": settings.keep_best}


def _alpha_record(strategy: Any, probs: dict, probs_rows: list[dict]) -> dict[str, Any]:
    """What arch.json keeps of a search's probabilities: the start, per-cell diagnostics, their summary,
    α's learning rate and the per-epoch history; logs a warning when the search did not decide."""
    init_probs = getattr(strategy, "init_probs", None)
    cells = cell_diagnostics(probs, init_probs)
    summary = summarise_search(cells)
    warning = indecision_warning(summary)
    if warning:
        logger.warning("%s", warning)
    module = getattr(strategy, "oneshot_module", None)
    history = ([{"epoch": 0, "probs": init_probs}] if init_probs else []) + list(probs_rows)
    return {"init_probs": init_probs, "cell_diagnostics": cells, "search_summary": summary,
            "search_warning": warning, "alpha_lr": getattr(module, "effective_arc_lr", None), "history": history}


def _export(strategy: Any, prune_rule: str, top2_ratio: float) -> dict[str, Any]:
    """The searched architecture under ``prune_rule``: ``argmax`` (Arch-1) or ``top2`` (Arch-2, M cells only)."""
    if prune_rule == "top2":
        return strategy.export_top2(top2_ratio, labels=lambda label: label.split("/")[-1].startswith("M"))
    return strategy.export()


def _finetune(model: torch.nn.Module, settings: RunSettings, run: RunDir, resume: bool, progress: bool,
              on_epoch: EpochHook | None, module_cls: type[HashingModule] = HashingModule):
    """Stage 2: train a fixed network, keep the best-val-mAP weights (W**)."""
    pl.seed_everything(settings.seed + 1, verbose=False)
    module = module_cls(settings.data, lr=settings.finetune_lr, eps=settings.finetune_eps, tau=settings.tau,
                        n_neg=settings.n_neg, topk=settings.topk, seed=settings.seed + 1,
                        in_batch_negatives=settings.in_batch_negatives)
    module.set_model(model)
    evaluator = make_evaluator(settings.data, max_epochs=settings.finetune_epochs, batch_size=settings.batch_size,
                               trainer_kwargs=_trainer_kwargs(settings, run, "finetune", progress, True, on_epoch))
    ckpt = _resume_path(run, "finetune", resume)
    trainer = evaluator.trainer
    started = time.perf_counter()
    if settings.finetune_epochs > 0:
        trainer.fit(module, evaluator.train_dataloaders, evaluator.val_dataloaders, ckpt_path=ckpt, weights_only=True)
        if trainer.interrupted:
            raise KeyboardInterrupt("fine-tuning interrupted")
    seconds = time.perf_counter() - started
    epoch_log = next(cb for cb in trainer.callbacks if isinstance(cb, _EpochLog))
    best = run.best_checkpoint("finetune")
    if best.is_file():
        state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)
    return module.model, epoch_log.rows, seconds


def _test(model: torch.nn.Module, settings: RunSettings, splits: tuple[str, ...] = ("val", "test")) -> dict[str, Any]:
    """Retrieval report of each query split against the retrieval database, and the encoding speed."""
    model = model.eval()
    device = "cuda" if settings.accelerator == "gpu" else "cpu"
    model.to(device)
    out: dict[str, Any] = {}
    database = load_split(settings.data, "retrieval")
    started = time.perf_counter()
    db_codes = sign_codes(encode(model, database[0], database[1], device=device)).numpy()
    db_seconds = time.perf_counter() - started
    for split in splits:
        qv, qa, ql = load_split(settings.data, split)
        q_codes = sign_codes(encode(model, qv, qa, device=device)).numpy()
        out[split] = retrieval_report(q_codes, db_codes, ql, database[2], topk=settings.topk)
    out["infer_seconds_per_12.5k"] = db_seconds / len(database[0]) * INFER_VIDEOS
    return out


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _finish(run: RunDir, settings: RunSettings, model: torch.nn.Module, history: list[dict],
            timings: dict[str, Any]) -> dict[str, Any]:
    """Test the final network, then write its weights, the history and metrics.json."""
    results = _test(model, settings)
    run.save_model(model)
    run.write_history(history)
    metrics = {
        "strategy": settings.strategy, **({"method": settings.method} if settings.method else {}),
        "bits": settings.bits, "seed": settings.seed, "data": settings.data,
        f"val_mAP@{settings.topk}": results["val"][f"mAP@{settings.topk}"],
        f"test_mAP@{settings.topk}": results["test"][f"mAP@{settings.topk}"],
        "mAP_normalisation": "hits (AV-NAS/AVHash form)",
        "val": results["val"], "test": results["test"], "params": _params(model),
        "infer_seconds_per_12.5k": results["infer_seconds_per_12.5k"], **timings,
    }
    run.write_metrics(metrics)
    return metrics


def _arch_record(settings: RunSettings, space_kwargs: dict, sample: dict, probs: dict | None) -> dict[str, Any]:
    return {"space": space_kwargs, "strategy": settings.strategy, "prune": settings.prune, "arch": sample,
            "probs": probs}


def _space_kwargs(space: AVNASSpace) -> dict[str, Any]:
    """The space's constructor arguments (NNI records them), as saved in arch.json."""
    return dict(space.trace_kwargs)


@_locked
def run_search(settings: RunSettings, out: str | Path, *, resume: bool = False, progress: bool = False,
               on_epoch: EpochHook | None = None, also_prune: tuple[str, ...] = (),
               search_from: str | Path | None = None) -> dict:
    """Search with ``settings.strategy``, prune, fine-tune from the inherited weights, test; write ``out``.

    ``on_epoch`` is called with each finished epoch's history row (stage, epoch, seconds, train_loss,
    val_mAP), search epochs first, e.g. to report intermediate results to an NNI trial.

    One search can serve several pruning rules (AV-NAS Arch-1 and Arch-2 differ only in ``prune``): a run given
    ``also_prune=("top2",)`` also saves the network that rule prunes from its supernet; a run given
    ``search_from=`` that run's directory (same settings but ``prune``) skips the search and fine-tunes that
    network — the very network its own search would have found, since the search is a pure function of the
    settings. Its ``arch.json`` names the run whose search it reused; search times are that search's.
    """
    run = RunDir(out)
    _prepare(run, settings, resume)
    # Before the space is built: its modules' initial weights are those of a sample trained from scratch (random
    # search). Torch seeds its generator randomly at start-up, so unseeded they would differ per process.
    pl.seed_everything(settings.seed, verbose=False)
    if run.arch_path.is_file() and resume and run.pruned_init_path().is_file():
        record = run.read_arch()
        space = build_space(settings)
        sample, probs = record["arch"], record.get("probs")
        model = load_weights(prune(space, sample), run.pruned_init_path())
        search_rows, search_seconds = record.get("search_history", []), record.get("search_seconds", 0.0)
    else:
        space = build_space(settings)
        if search_from is not None:
            source, sample, weights = _shared_search(settings, search_from)
            model = load_weights(prune(space, sample), weights)
            probs, search_rows, search_seconds = source.get("probs"), source["search_history"], source["search_seconds"]
            details = copy.deepcopy(source.get("search_details"))
        else:
            found = _search(settings, run, resume, progress, on_epoch, tuple(also_prune))
            samples, probs, supernet, search_rows, search_seconds, details = found
            sample = samples[settings.prune]
            # supernet None (random search, k = 1): the sample is trained from scratch, from fresh weights.
            model = prune(copy.deepcopy(supernet) if supernet is not None else space, sample)
        record = _arch_record(settings, _space_kwargs(space), sample, probs)
        record.update(search_history=search_rows, search_seconds=search_seconds)
        alpha = (details or {}).pop("alpha", None) if search_from is None else _alpha_of(source, search_from)
        if details:
            record["search_details"] = details
        if alpha is not None:
            history = alpha.pop("history")
            record.update(alpha)  # init_probs beside probs, per-cell diagnostics, summary, warning, α's lr
            run.write_alpha_history(history)
        if search_from is not None:
            record["search_from"] = str(search_from)
        else:
            for rule in sorted(set(also_prune) - {settings.prune}):
                pruned = prune(copy.deepcopy(supernet) if supernet is not None else space, samples[rule])
                save_weights(pruned, run.pruned_init_path(rule))
                record.setdefault("also_pruned", {})[rule] = samples[rule]
        save_weights(model, run.pruned_init_path())
        run.write_arch(record)
    logger.info("architecture: %s", sample)
    model, ft_rows, ft_seconds = _finetune(model, settings, run, resume, progress, on_epoch)
    epochs = [r["seconds"] for r in search_rows] or [0.0]
    timings = {"supernet_seconds_per_epoch": sum(epochs) / len(epochs), "search_seconds": search_seconds,
               "finetune_seconds_per_epoch": ft_seconds / max(settings.finetune_epochs, 1)}
    return _finish(run, settings, model, search_rows + ft_rows, timings)


def shares_search(settings: RunSettings, source: str | Path) -> bool:
    """Whether ``source`` is a run directory whose search :func:`run_search` can reuse for ``settings``
    (``search_from``): same settings but ``prune``, and it saved the network of this run's rule."""
    run = RunDir(source)
    if not (run.settings_path.is_file() and run.arch_path.is_file()):
        return False
    saved = RunSettings.from_dict(run.read_settings())
    return (replace(saved, prune=settings.prune) == settings
            and settings.prune in run.read_arch().get("also_pruned", {})
            and run.pruned_init_path(settings.prune).is_file())


def _shared_search(settings: RunSettings, source: str | Path) -> tuple[dict[str, Any], dict[str, Any], Path]:
    """(source arch record, this rule's sample, its pruned weights) of a run that saved them for ``settings``."""
    if not shares_search(settings, source):
        raise RunError(f"{source}: no search to share with these settings (it needs the same settings but 'prune' "
                       f"and a run made with also_prune including {settings.prune!r})")
    record = RunDir(source).read_arch()
    return record, record["also_pruned"][settings.prune], RunDir(source).pruned_init_path(settings.prune)


@_locked
def run_train(settings: RunSettings, out: str | Path, *, resume: bool = False, progress: bool = False,
              on_epoch: EpochHook | None = None) -> dict:
    """Train a fixed architecture (an expert name, ``NAME-visual``/``NAME-audio`` or an ``arch.json``) from scratch.

    ``on_epoch`` as in :func:`run_search`.
    """
    run = RunDir(out)
    _prepare(run, settings, resume)
    space_overrides, sample = resolve_arch(settings.arch, settings)
    pl.seed_everything(settings.seed, verbose=False)  # before the space: the pruned net keeps its initial weights
    space = build_space(settings, **space_overrides)
    check_sample(space, sample, str(settings.arch))
    model = prune(space, sample)
    run.write_arch(_arch_record(settings, _space_kwargs(space), sample, None))
    model, rows, seconds = _finetune(model, settings, run, resume, progress, on_epoch)
    timings = {"train_seconds_per_epoch": seconds / max(settings.finetune_epochs, 1)}
    return _finish(run, settings, model, rows, timings)


@_locked
def run_method(settings: RunSettings, out: str | Path, *, resume: bool = False, progress: bool = False,
               on_epoch: EpochHook | None = None) -> dict:
    """Train the video-hashing method ``settings.method`` (:mod:`avnas_nni.methods`) from scratch with its own loss.

    Same run directory, stage (``finetune``: best val-mAP epoch kept), timings and metrics as
    :func:`run_train`; ``arch.json`` holds ``{"method": NAME, "kwargs": {...}}``. The method's own arguments
    come from ``settings.extra["method"]``; d, m and q from the data and the settings. ``on_epoch`` as in
    :func:`run_search`.
    """
    if settings.method is None:
        raise ValueError("method: expected a method name for run_method, got none")
    run = RunDir(out)
    _prepare(run, settings, resume)
    visual, _, _ = load_split(settings.data, "val")
    pl.seed_everything(settings.seed, verbose=False)
    model = build_method(settings.method, dim=visual.shape[2], length=visual.shape[1], bits=settings.bits,
                         **settings.extra.get("method", {}))
    run.write_arch({"method": settings.method, "kwargs": model.config(), "citation": model.citation})
    model, rows, seconds = _finetune(model, settings, run, resume, progress, on_epoch, module_cls=MethodModule)
    timings = {"train_seconds_per_epoch": seconds / max(settings.finetune_epochs, 1)}
    return _finish(run, settings, model, rows, timings)


def resolve_arch(arch: str | None, settings: RunSettings) -> tuple[dict[str, Any], dict[str, Any]]:
    """(space overrides, sample) of an expert name, ``NAME-visual``/``NAME-audio``, or an arch.json path."""
    if not arch:
        raise SettingsError("arch: expected an expert name (transformer, transformer_plus, mamba, with an optional "
                         "-visual/-audio suffix) or a path to an arch.json")
    name, _, modality = arch.partition("-")
    if modality in ("visual", "audio") or (not modality and not arch.endswith(".json")):
        expert = get_expert(name.replace("+", "_plus"))
        sample = expert.sample()
        overrides = dict(expert.space_kwargs)
        if modality:
            sample = single_modality(sample, modality, expert.tail["SF"])
            overrides["modalities"] = (modality,)
        return overrides, sample
    record = read_json(Path(arch), "architecture")
    sample = record.get("arch", record)
    space = record.get("space", {})
    overrides = {k: (tuple(v) if k == "modalities" else v) for k, v in space.items()
                 if k in ("expand", "kernel_size", "preset", "modalities", "up_down")}
    if not isinstance(sample, dict):
        raise RunError(f"{arch}: 'arch' must map cell labels to choices")
    return overrides, sample


def check_settings(path: str | Path, settings: RunSettings, action: str) -> None:
    """Raise :class:`RunError` (one line, the differing fields as ``{field: (saved, wanted)}``) unless the run
    directory ``path`` was made with ``settings``; ``action`` names what needed them equal (``--resume``)."""
    run = RunDir(path)
    saved = run.read_settings()
    if RunSettings.from_dict(saved) != settings:
        diff = {k: (saved.get(k), v) for k, v in asdict(settings).items() if saved.get(k) != v
                and not (isinstance(v, tuple) and list(v) == saved.get(k))}
        if diff:
            raise RunError(f"{run.settings_path}: {action} with other settings than the run's: {diff}")


def reusable_run(path: str | Path, settings: RunSettings, action: str) -> tuple[dict[str, Any] | None, bool]:
    """``(metrics, resume)`` of a run directory a caller may reuse: a finished run made with ``settings`` gives its
    metrics (one made with other settings: a :class:`RunError` naming ``action``); otherwise metrics is None and
    ``resume`` says whether an unfinished run is there to continue."""
    run = RunDir(path)
    if run.metrics_path.is_file():
        check_settings(path, settings, action)
        return run.read_metrics(), False
    return None, run.settings_path.is_file()


def validate_inputs(settings: RunSettings) -> None:
    """Check everything a run reads before it writes anything: the device, and every split of the data (read
    once into the per-process cache the run then trains from, so a NaN or a truncated file is a one-line
    :class:`~avnas_nni.errors.DataError` here, not an error inside NNI's engine later)."""
    settings.accelerator  # noqa: B018 - raises ValueError for cuda without a CUDA device
    for split in SPLITS:
        load_split(settings.data, split)


def _prepare(run: RunDir, settings: RunSettings, resume: bool) -> None:
    # Validate first, write second: a bad --data leaves nothing that blocks the corrected command.
    validate_inputs(settings)
    if resume:
        if not run.settings_path.is_file():
            raise RunError(f"{run.path}: nothing to resume (no settings.json); run without --resume first")
        check_settings(run.path, settings, "--resume")
        return
    if run.metrics_path.exists() or run.settings_path.exists():
        if run.has_finished_work():
            raise RunError(f"{run.path}: already holds a run; choose another --out or pass --resume")
        # Made by a run that failed or was killed before its first finished epoch (the lock says it is not
        # running): nothing in it is worth keeping.
        logger.warning("%s: taking over a run that finished no epoch", run.path)
    run.path.mkdir(parents=True, exist_ok=True)
    run.write_settings(asdict(settings))


def load_run_model(path: str | Path) -> tuple[torch.nn.Module, RunSettings, ArchRecord]:
    """Rebuild a finished run's network with its weights: ``(model, settings, arch record)``."""
    run = RunDir(path)
    settings = RunSettings.from_dict(run.read_settings())
    record = run.read_arch_record()
    if record.is_method:  # a video-hashing method's run (run_method)
        try:
            model = build_method(record.method, **record.build_kwargs)
        except ValueError as exc:
            raise RunError(f"{run.arch_path}: {exc}") from None
        run.load_model(model)
        return model, settings, record
    overrides = {k: (tuple(v) if k == "modalities" else v) for k, v in record.build_kwargs.items()}
    try:
        space = AVNASSpace(**overrides)
    except (TypeError, ValueError) as exc:
        raise RunError(f"{run.arch_path}: 'space' does not describe an AV-NAS space ({exc})") from None
    check_sample(space, record.arch, str(run.arch_path))
    model = prune(space, record.arch)
    run.load_model(model)
    return model, settings, record


def evaluate_run(path: str | Path, split: str = "test", data: str | None = None) -> dict[str, Any]:
    """Retrieval metrics of a finished run on ``split`` (database: the retrieval list)."""
    model, settings, record = load_run_model(path)
    if data:
        settings.data = data
        # Another dataset must have the features the network was built for: a user error, named before the
        # network sees a batch of the wrong shape.
        expected = record.input_shape
        visual, _, _ = load_split(data, split)
        if None not in expected and tuple(visual.shape[1:]) != expected:
            raise DataError(f"{data}: features are (m={visual.shape[1]}, d={visual.shape[2]}); the network of "
                            f"{path} expects (m={expected[0]}, d={expected[1]})")
    return _test(model, settings, (split,))[split]
