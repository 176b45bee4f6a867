"""Quiet output: ``avnas search`` in a subprocess prints no Lightning banner/tip or third-party deprecation
warning without ``-v`` (and does with it: the check can fail), and draws one progress bar per stage."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOISE = ("GPU available", "TPU available", "💡 Tip", "litlogger", "LeafSpec", "_pytree", "DeprecationWarning",
         "FutureWarning", "`Trainer.fit` stopped")


def _search(tiny_data: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "default"}
    command = [sys.executable, "-m", "avnas_nni", *extra, "search", "--data", tiny_data, "--bits", "8", "--epochs",
               "1", "--finetune-epochs", "2", "--batch-size", "16", "--out", str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_search_is_quiet_without_v_and_shows_the_noise_with_it(tiny_data, tmp_path):
    quiet = _search(tiny_data, tmp_path / "quiet")
    assert not [word for word in NOISE if word in quiet.stderr], quiet.stderr
    assert "test mAP@" in quiet.stdout  # the final summary as before
    # one bar per stage: stage name, epoch, loss, val mAP (after the first validation) and an ETA ("<")
    bars = quiet.stderr.replace("\r", "\n")
    for stage in ("search", "finetune"):
        assert any(line.startswith(f"{stage}: 100%") for line in bars.splitlines()), bars
    assert "epoch=2/2" in bars and "loss=" in bars and "val_mAP=" in bars and "<" in bars
    loud = _search(tiny_data, tmp_path / "loud", "-v")
    assert "GPU available" in loud.stderr


def test_training_logs_its_batch_size_so_lightning_need_not_guess(tiny_data, tmp_path):
    """Lightning warns "Trying to infer the `batch_size`" when a logged loss does not say it: NNI's one-shot
    strategies log ours through their own module (the benchmark's worker processes showed it on every search)."""
    import warnings

    from avnas_nni.pipeline import RunSettings, run_search

    settings = RunSettings.resolve("quick", data=tiny_data, strategy="darts", bits=8, search_epochs=1,
                                   finetune_epochs=1, batch_size=16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_search(settings, tmp_path / "run")
    assert not [w for w in caught if "infer the `batch_size`" in str(w.message)]
