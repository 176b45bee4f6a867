"""End to end through NNI: ``nnictl create --config`` runs a tiny strategy comparison to DONE on loopback.

Two strategies succeed and one trial with an impossible setting fails without stopping the others; the REST
API shows every final metric with its strategy; ``avnas compare`` reads the experiment back while it runs
(REST) and after it stops (database); the experiment is stopped by its id.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from avnas_nni.cli import main as avnas
from avnas_nni.compare import read_trials, summarise

from nni_experiments import NNICTL, REPO, launch
from system_programs import require_program


@pytest.fixture(scope="module")
def experiment(tiny_data, tmp_path_factory):
    if not NNICTL.is_file():
        pytest.fail(f"nnictl not found next to {sys.executable}: install the package with its dependencies")
    # "bogus" is an impossible strategy: that trial fails, the others must not.
    yield from launch(tmp_path_factory.mktemp("nni"), tiny_data, ["avnas", "darts", "bogus"],
                       {"platform": "local", "useActiveGpu": False})


#: Screenshots and other test artefacts (kept by CI; ignored by git).
ARTIFACTS = Path(os.environ.get("AVNAS_TEST_ARTIFACTS", REPO / "runs" / "test-artifacts"))


def _final(job) -> dict:
    return json.loads(json.loads(job["finalMetricData"][-1]["data"]))


def test_every_good_trial_succeeds_with_its_strategy_and_the_bad_one_fails(experiment):
    jobs = experiment["jobs"]
    by_status = {}
    for job in jobs:
        by_status.setdefault(job["status"], []).append(job)
    assert len(by_status.get("SUCCEEDED", [])) == 2 and len(by_status.get("FAILED", [])) == 1, by_status.keys()
    finals = [_final(job) for job in by_status["SUCCEEDED"]]
    assert sorted(f["strategy"] for f in finals) == ["avnas", "darts"]
    for final in finals:
        assert 0.0 <= final["default"] <= 1.0 and final["bits"] == 8 and final["arch"]
    failed = by_status["FAILED"][0]
    assert json.loads(failed["hyperParameters"][0])["parameters"]["strategy"] == "bogus"


def test_web_ui_shows_the_comparison_in_headless_chromium(experiment, tmp_path):
    """Overview (experiment, best metric), trials (each strategy, its metric), each trial's intermediate chart."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    chromium = require_program("chromium", "chromium", "/usr/bin/chromium")
    chromedriver = require_program("chromedriver", "chromium-driver", "/usr/bin/chromedriver")
    shots = ARTIFACTS / "webui"
    shots.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1800,1100"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    base = f"http://127.0.0.1:{experiment['port']}"
    finals = {job["trialJobId"]: _final(job) for job in experiment["jobs"] if job["status"] == "SUCCEEDED"}
    try:
        driver.get(f"{base}/oview")
        body = _wait_text(driver, By, lambda text: experiment["id"] in text and "Best metric" in text)
        best = max(final["default"] for final in finals.values())
        assert f"{best:.6f}"[:6] in body  # the UI rounds to 6 digits
        driver.save_screenshot(str(shots / "overview.png"))

        driver.get(f"{base}/detail")
        _wait_text(driver, By, lambda text: text.count("SUCCEEDED") == 2 and "FAILED" in text)
        rows = driver.find_elements(By.CSS_SELECTOR, ".ms-DetailsRow")
        assert len(rows) == 3
        strategies = {}
        for index in range(len(rows)):
            row = driver.find_elements(By.CSS_SELECTOR, ".ms-DetailsRow")[index]
            row.find_element(By.CSS_SELECTOR, "[data-automation-key=_expand] i").click()  # Parameters / Log
            time.sleep(1)
            expanded = driver.find_element(By.TAG_NAME, "body").text
            trial_id = row.find_element(By.CSS_SELECTOR, "[data-automation-key=id]").text.strip()
            strategies[trial_id] = re.search(r'strategy:"(\w+)"', expanded).group(1)
            if trial_id in finals:  # the row shows that trial's own final metric beside its strategy
                assert strategies[trial_id] == finals[trial_id]["strategy"]
                assert f"{finals[trial_id]['default']:.6f}"[:7] in row.text
            row.find_element(By.CSS_SELECTOR, "[data-automation-key=_expand] i").click()
            time.sleep(0.5)
        assert sorted(strategies.values()) == ["avnas", "bogus", "darts"]
        driver.save_screenshot(str(shots / "trials.png"))
        for index, row in enumerate(driver.find_elements(By.CSS_SELECTOR, ".ms-DetailsRow")):
            row.find_element(By.CSS_SELECTOR, ".detail-button-operation").click()  # intermediate-result chart
            dialog = _wait_text(driver, By, lambda text: "Intermediate results" in text)
            assert "# Intermediate result" in dialog
            assert driver.find_elements(By.CSS_SELECTOR, ".ms-Dialog-main canvas, .ms-Modal canvas")
            driver.save_screenshot(str(shots / f"intermediate-{index}.png"))
            driver.find_element(By.CSS_SELECTOR, ".ms-Dialog-main button[aria-label=Close], .ms-Modal button").click()
            time.sleep(0.5)
        errors = [entry["message"] for entry in driver.get_log("browser")
                  if entry["level"] == "SEVERE" and "cdn.office.net" not in entry["message"]]
        assert errors == []  # fonts/icons from Microsoft's CDN cannot load offline; nothing else may fail
    finally:
        driver.quit()


def _wait_text(driver, by, predicate, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = driver.find_element(by.TAG_NAME, "body").text
        if predicate(text):
            return text
        time.sleep(0.5)
    raise AssertionError(f"page text never matched within {timeout} s: {text[:500]!r}")


def test_compare_reads_the_experiment_while_running_and_after_stopping(experiment, capsys):
    assert experiment["read_while_running"] == "rest"
    subprocess.run([str(NNICTL), "stop", experiment["id"]], capture_output=True, text=True, timeout=120)
    trials, source = read_trials(experiment["root"] / experiment["id"])
    assert source == "database" and len(trials) == 3
    table, summary = summarise(trials)
    assert sorted(summary["strategy"]) == ["avnas", "darts"] and (summary["trials"] == 1).all()
    expected = {_final(job)["strategy"]: _final(job)["default"] for job in experiment["jobs"]
                if job["status"] == "SUCCEEDED"}
    assert dict(zip(summary["strategy"], summary["test_mAP_mean"], strict=True)) == pytest.approx(expected)
    out = experiment["root"] / "compare"
    assert avnas(["compare", experiment["id"], "--root", str(experiment["root"]), "--out", str(out)]) == 0
    assert "1 trial(s) did not finish" in capsys.readouterr().out
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"
