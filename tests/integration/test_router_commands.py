"""`gateway eval-router` and `gateway finetune-router` as a user runs them."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from extensions.config.loader import load_gateway_config
from extensions.router.examples import router_examples
from tests.support.stack import GATEWAY_YAML

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REQUIRED_KEYS = {"in_scope_accuracy", "oos_recall", "oos_precision", "clarify_rate",
                 "latency_p50_ms", "latency_p99_ms"}  # fmt: skip


def gateway(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "extensions.cli", *args], capture_output=True,
                          text=True, timeout=600, cwd=cwd)  # fmt: skip


@pytest.fixture(scope="module")
def demo_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = load_gateway_config(GATEWAY_YAML)
    examples = router_examples(config.routers["support-bot"], GATEWAY_YAML.parent)
    path = tmp_path_factory.mktemp("data") / "support.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows((e.text, e.label) for e in examples)
    return path


def test_eval_router_reports_table_and_json(demo_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = gateway("eval-router", "--train", str(demo_csv), "--eval-split", "0.25",
                     "--json", str(out), "--no-progress")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "in-scope accuracy" in result.stdout and "classification p50" in result.stdout
    report = json.loads(out.read_text())
    assert set(report) >= REQUIRED_KEYS
    assert 0.6 <= report["in_scope_accuracy"] <= 1.0  # ~100 examples, 8 classes
    assert 0.0 <= report["oos_recall"] <= 1.0
    assert 0 < report["latency_p50_ms"] <= report["latency_p99_ms"]


def test_eval_router_rejects_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("sentence,y\nhello,x\n")
    result = gateway("eval-router", "--train", str(bad))
    assert result.returncode == 2
    assert "needs a header with 'text' and 'label'" in result.stderr


def test_finetune_router_writes_a_model_the_gateway_loads(tmp_path: Path) -> None:
    out = tmp_path / "support-bot-encoder"
    result = gateway("finetune-router", "--router", "support-bot", "--out", str(out),
                     "--epochs", "1")  # fmt: skip
    assert result.returncode == 0, result.stderr
    meta = json.loads((out / "gateway_finetune.json").read_text())
    assert "reset_password" in meta["labels"] and "oos" in meta["labels"]
    # point a copy of gateway.yaml at it: the config validates and the encoder loads
    data = yaml.safe_load(GATEWAY_YAML.read_text())
    data["embedding"]["model"] = str(out)
    data["embedding"]["cache_dir"] = str(tmp_path / "cache")
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(yaml.safe_dump(data))
    (tmp_path / "examples").symlink_to(GATEWAY_YAML.parent / "examples")
    from extensions.embedding.encoder import sentence_encoder

    encoder = sentence_encoder(load_gateway_config(cfg).embedding)
    try:
        vectors = encoder.encode_sync(["I forgot my password", "the app crashes"])
        assert vectors.shape == (2, 384)
    finally:
        encoder.close()


def test_finetune_unknown_router(tmp_path: Path) -> None:
    result = gateway("finetune-router", "--router", "nope", "--out", str(tmp_path / "x"))
    assert result.returncode == 2
    assert "no router 'nope' (have: support-bot)" in result.stderr
