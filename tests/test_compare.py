"""``avnas compare`` reading an NNI experiment database: malformed trial records are named, not dropped silently."""

from __future__ import annotations

import json
import logging
import sqlite3

from avnas_nni.compare import read_trials


def _experiment(tmp_path, events, metrics):
    directory = tmp_path / "exp-i15"
    (directory / "db").mkdir(parents=True)
    with sqlite3.connect(directory / "db" / "nni.sqlite") as conn:
        conn.execute("create table TrialJobEvent (timestamp integer, trialJobId text, event text, data text)")
        conn.execute("create table MetricData (timestamp integer, trialJobId text, parameterId text, type text, "
                     "sequence integer, data text)")
        conn.executemany("insert into TrialJobEvent values (?, ?, ?, ?)",
                         [(i, *row) for i, row in enumerate(events)])
        conn.executemany("insert into MetricData values (?, ?, '0', ?, ?, ?)",
                         [(i, *row) for i, row in enumerate(metrics)])
    return directory


def test_malformed_trial_records_are_warned_about(tmp_path, caplog):
    good = json.dumps({"parameter_id": 0, "parameters": {"strategy": "avnas", "bits": 64}})
    final = json.dumps(json.dumps({"default": 0.5, "strategy": "avnas", "bits": 64}))
    directory = _experiment(tmp_path, [
        ("good", "WAITING", good), ("good", "SUCCEEDED", ""),
        ("bad", "WAITING", '{"parameters": {"strategy": "darts", '), ("bad", "SUCCEEDED", ""),
        ("odd", "WAITING", '["not", "a", "record"]'),
    ], [("good", "FINAL", 0, final), ("good", "PERIODICAL", 0, "0.4"), ("bad", "FINAL", 0, '"{0.5')])
    with caplog.at_level(logging.WARNING, logger="avnas_nni.compare"):
        trials, source = read_trials(directory)
    by_id = {trial["trial"]: trial for trial in trials}
    assert source == "database" and set(by_id) == {"good", "bad", "odd"}
    assert by_id["good"]["parameters"] == {"strategy": "avnas", "bits": 64} and by_id["good"]["final"]["default"] == 0.5
    assert by_id["bad"]["parameters"] == {} and by_id["bad"]["final"] is None and by_id["odd"]["parameters"] == {}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith("trial bad: malformed parameter record") for m in warnings)
    assert any(m.startswith("trial bad: malformed final metric") for m in warnings)
    assert any(m.startswith("trial odd: parameter record without a 'parameters' object") for m in warnings)
    assert not any("trial good" in m for m in warnings)
