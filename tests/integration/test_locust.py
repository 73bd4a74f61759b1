"""The locust scenarios (loadtests/locustfile.py) against a real proxy on the load-test config.

Locust runs headless for 15 s as a subprocess, with the command line
``python -m loadtests.run_locust`` builds; the test reads its CSV reports and the
gateway outcome summary the locustfile writes next to them.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loadtests.loadtest_config import loadtest_keys, write_loadtest_config
from loadtests.run_locust import REPO, locust_command
from tests.support.stack import Proxy, SimProvider

pytestmark = pytest.mark.integration

LIMITED_RPM = 5  # the mobile-android key: some of its requests must be answered 429
USERS = 8  # round robin over 4 keys: 2 users on the limited key


@pytest.fixture(scope="module")
def loadtest_gateway(
    log_dir: Path, sim: SimProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    config = write_loadtest_config(tmp_path_factory.mktemp("loadtest"), LIMITED_RPM)
    proxy = Proxy(log_dir, sim, gateway_config=config, extra_env=loadtest_keys(),
                  name="locust-gateway").start()  # fmt: skip
    yield proxy
    proxy.stop()


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_locust_mix_reports_every_outcome(loadtest_gateway: Proxy, tmp_path: Path) -> None:
    env = dict(os.environ)
    env.update({
        "GATEWAY_KEYS": ",".join(loadtest_keys().values()),
        "LOADTEST_WAIT": "0.05,0.3",
        "LOADTEST_SEED": "7",
    })  # fmt: skip
    env.pop("LOADTEST_SUMMARY", None)
    cmd = locust_command(loadtest_gateway.base_url, USERS, USERS, "15s", tmp_path)
    run = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    output = (run.stdout + run.stderr)[-6000:]
    assert run.returncode == 0, f"locust failed (exit {run.returncode}):\n{output}"
    assert "Gateway outcomes" in run.stdout, output  # the summary printed at test stop

    stats = read_csv(tmp_path / "locust_stats.csv")
    total = next(r for r in stats if r["Name"] == "Aggregated")
    assert int(total["Request Count"]) >= 50, output
    assert int(total["Failure Count"]) == 0, output
    assert read_csv(tmp_path / "locust_failures.csv") == []
    assert (tmp_path / "locust.html").stat().st_size > 10_000
    names = {r["Name"] for r in stats if r["Name"] != "Aggregated"}
    outcomes = {name.rsplit("[", 1)[-1].rstrip("]") for name in names}
    assert {"HIT_EXACT", "HIT_SEMANTIC", "MISS", "REFUSE", "CLARIFY", "429"} <= outcomes, names
    assert any(" stream [" in name for name in names), names

    summary: dict[str, Any] = json.loads((tmp_path / "locust_outcomes.json").read_text())
    # every request locust counted was classified from the gateway's headers
    assert summary["requests"] == int(total["Request Count"])
    assert summary["cache"].get("HIT_EXACT", 0) >= 1
    assert summary["cache"].get("HIT_SEMANTIC", 0) >= 1
    assert summary["action"].get("REFUSE", 0) >= 1
    assert summary["action"].get("CLARIFY", 0) >= 1
    assert summary["streams"]["completed"] >= 1 and summary["streams"]["incomplete"] == 0
    assert summary["rate_limited"] >= 1 and summary["status"]["429"] == summary["rate_limited"]
    assert set(summary["status"]) == {"200", "429"}
    assert summary["overhead_ms"]["count"] >= 1 and summary["overhead_ms"]["p50"] > 0
    scenarios = summary["scenarios"]
    # repeats and paraphrases of cached answers are served from the cache
    assert scenarios["repeat"]["as_expected_share"] >= 0.8, scenarios["repeat"]
    assert scenarios["paraphrase"]["as_expected_share"] >= 0.8, scenarios["paraphrase"]
    assert scenarios["out-of-scope"]["outcomes"].get("REFUSE", 0) >= 1
