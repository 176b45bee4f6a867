"""Multi-trial NAS over the AV-NAS space with NNI's own strategies, every sampled architecture a trial.

NNI's multi-trial strategies (Random, RegularizedEvolution) run on NNI's training-service engine: each
sampled architecture is trained from scratch in its own trial process and shows up in NNI's web UI with
its per-epoch validation mAP and, as final result, its best validation mAP@100. This is the web-UI view
of a search; the one-shot strategies (``avnas search``) are the fast way to search.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from nni.nas.experiment import NasExperiment
from nni.nas.strategy import Random, RegularizedEvolution

from avnas_nni.errors import SettingsError
from avnas_nni.evaluator import make_evaluator
from avnas_nni.pipeline import RunSettings, build_space

__all__ = ["MULTI_TRIAL_STRATEGIES", "run_multitrial"]

logger = logging.getLogger(__name__)

#: Name → NNI multi-trial strategy factory (seeded).
MULTI_TRIAL_STRATEGIES = {
    "random": lambda seed, trials: Random(dedup=True, seed=seed),
    "evolution": lambda seed, trials: RegularizedEvolution(population_size=max(2, min(20, trials // 2)),
                                                           sample_size=max(1, min(5, trials // 4)), seed=seed),
}


def run_multitrial(strategy: str, settings: RunSettings, *, port: int = 8080, trials: int = 10,
                   concurrency: int = 1, work_dir: str | Path | None = None, keep_running: bool = False
                   ) -> tuple[list[dict[str, Any]], str]:
    """Run an NNI multi-trial search; return (the best architectures, best first, as dicts; experiment id).

    Each trial trains one architecture for ``settings.finetune_epochs`` epochs with the fine-tune optimiser
    settings. ``keep_running`` leaves the web UI up after the last trial (stop it with ``nnictl stop ID``).
    """
    if strategy not in MULTI_TRIAL_STRATEGIES:
        raise SettingsError(f"unknown multi-trial strategy {strategy!r}; "
                            f"expected one of {sorted(MULTI_TRIAL_STRATEGIES)}")
    for name, value in (("trials", trials), ("concurrency", concurrency), ("port", port)):
        if not isinstance(value, int) or value < 1:
            raise SettingsError(f"{name}: expected a positive integer, got {value!r}")
    space = build_space(settings)
    evaluator = make_evaluator(settings.data, max_epochs=settings.finetune_epochs, batch_size=settings.batch_size,
                               accelerator=settings.accelerator, lr=settings.finetune_lr, eps=settings.finetune_eps,
                               tau=settings.tau, n_neg=settings.n_neg, topk=settings.topk, seed=settings.seed,
                               in_batch_negatives=settings.in_batch_negatives, report_to_nni=True)
    experiment = NasExperiment(space, evaluator, MULTI_TRIAL_STRATEGIES[strategy](settings.seed, trials))
    experiment.config.max_trial_number = trials
    experiment.config.trial_concurrency = concurrency
    experiment.config.experiment_name = f"avnas-nas-{strategy}"
    if work_dir is not None:
        experiment.config.experiment_working_directory = str(Path(work_dir).resolve())
    try:
        experiment.run(port=port, wait_completion=True)
        best = experiment.export_top_models(top_k=min(3, trials), formatter="dict")
        return list(best), experiment.id
    finally:
        if not keep_running:
            experiment.stop()
