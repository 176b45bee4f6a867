"""The shipped NNI experiment configs: valid for NNI 3.0, and every parameter set they can send is a valid run."""

from __future__ import annotations

import argparse
import itertools
import shlex
from pathlib import Path

import pytest
import yaml
from nni.experiment.config import ExperimentConfig

from avnas_nni import trial

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "experiments").glob("*.yml"))


def _parameter_sets(space: dict) -> list[dict]:
    """Every grid point of the choices, with numeric ranges at both ends."""
    axes = {}
    for name, spec in space.items():
        if spec["_type"] == "choice":
            axes[name] = spec["_value"]
        elif spec["_type"] in ("uniform", "loguniform", "quniform", "qloguniform"):
            axes[name] = spec["_value"][:2]
        else:
            raise AssertionError(f"{name}: unexpected search-space type {spec['_type']}")
    return [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())]


def test_every_shipped_config_is_there():
    assert {path.name for path in CONFIGS} == {"compare_quick.yml", "compare_embedded.yml", "compare_custom.yml",
                                              "sweep_avnas_tpe.yml", "compare_remote.yml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_validates_and_its_parameters_make_valid_runs(path, tmp_path, monkeypatch):
    raw = yaml.safe_load(path.read_text())
    if raw["trainingService"]["platform"] == "remote":  # the template names a key file the user has
        key = tmp_path / "id_ed25519"
        key.write_text("not a real key\n")
        for machine in raw["trainingService"]["machineList"]:
            machine["sshKeyFile"] = str(key)
    copy = path.parent / f".test-{path.name}"  # next to the original: relative paths resolve the same way
    try:
        copy.write_text(yaml.safe_dump(raw))
        config = ExperimentConfig.load(str(copy))
        config.validate()
    finally:
        copy.unlink(missing_ok=True)
    # relative paths are relative to the config file: the trial runs in the repository root
    assert Path(config.canonical_copy().trial_code_directory) == path.parents[1]
    argv = shlex.split(raw["trialCommand"])
    assert argv[0].endswith(".venv/bin/python") and argv[1:3] == ["-m", "avnas_nni.trial"]
    options = argparse.ArgumentParser()
    options.add_argument("--data", default="embedded")
    options.add_argument("--profile", default="quick")
    options.add_argument("--set", action="append")
    options.add_argument("--threads", type=int)
    defaults = trial._defaults(options.parse_args(argv[3:]))  # the trial's own reading of --data/--profile/--set
    sets = _parameter_sets(raw["searchSpace"])
    assert sets
    for parameters in sets:
        settings, command = trial.settings_from_parameters(parameters, defaults)
        assert command == "search" and settings.strategy in ("avnas", "darts", "proxyless", "spos", "enas", "random")
