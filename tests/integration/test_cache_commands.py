"""`gateway calibrate-cache` as a user runs it, on a small labelled file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

PAIRS = [
    (
        "How do I reset my wifi router to factory settings?",
        "How can I reset my wifi router to factory settings?",
        1,
    ),
    (
        "How do I clear the cache of my web browser?",
        "How can I clear the cache of my web browser?",
        1,
    ),
    (
        "What is the population of Vietnam in 2020?",
        "What is the population of Vietnam in 2021?",
        0,
    ),  # near miss: verification refuses
    ("What is the capital of Vietnam?", "What is the capital of Laos?", 0),
    ("How do I learn to play the guitar?", "What is the best way to cook rice?", 0),
]
KEYS = {
    "threshold",
    "pairwise_precision",
    "pairwise_recall",
    "sim_hit_rate",
    "sim_precision",
    "sim_recall",
}


def calibrate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "extensions.cli", "calibrate-cache", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def train(pairs: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``gateway train-cache-verifier`` on ``pairs``."""
    given = ["--pairs", str(pairs), "--data-licence", "written for this test", *args]
    return subprocess.run(
        [sys.executable, "-m", "extensions.cli", "train-cache-verifier", *given],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pairs") / "pairs.tsv"
    lines = ["text_a\ttext_b\tlabel"] + [f"{a}\t{b}\t{label}" for a, b, label in PAIRS]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_default_threshold_operating_point(pairs_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "default.json"
    proc = calibrate("--pairs", str(pairs_file), "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert set(report) >= KEYS
    assert report["threshold"] == 0.94  # config/gateway.yaml's cache.semantic.threshold
    assert report["pairwise_precision"] == 1.0 and report["pairwise_recall"] == 1.0
    assert report["raw_precision"] < 1.0  # without verification the 2020/2021 pair hits
    assert report["sim_precision"] == 1.0 and report["sim_hit_rate"] == pytest.approx(2 / 5)
    assert len(report["grid"]) == 1
    assert report["verifier"]["name"] == "learned" and report["min_score"] == 0.84
    assert report["verifier"]["model"] == "builtin:qqp-pair-mlp"
    assert report["verifier"]["card"]["trained_on"] == "qqp_dev.tsv"
    low, high = report["ci95"]["sim_precision"]
    assert low <= report["sim_precision"] <= high
    assert report["bootstrap"] == {"resamples": 1000, "seed": 0, "unit": "query"}
    assert report["lookup_ms"]["p50"] > 0


def test_sweep_recommends_a_threshold(pairs_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep.json"
    proc = calibrate(
        "--pairs",
        str(pairs_file),
        "--verifier",
        "rules",
        "--target-precision",
        "0.99",
        "--json",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["recommended"] is not None and report["sim_precision"] >= 0.99
    assert len(report["grid"]) == 30
    assert "recommended for precision >= 0.99: threshold" in proc.stdout


def test_bad_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("question,other\nx,y\n")
    proc = calibrate("--pairs", str(bad))
    assert proc.returncode == 2
    assert "missing columns ['label', 'text_a', 'text_b']" in proc.stderr


def test_by_intent_writes_a_yaml_snippet(tmp_path: Path) -> None:
    rows = ["text_a,text_b,label,router,intent"]
    rows += [f"{a},{b},{label},support-bot,billing" for a, b, label in PAIRS]
    path = tmp_path / "pairs.csv"
    path.write_text("\n".join(rows) + "\n")
    out = tmp_path / "thresholds.yaml"
    proc = calibrate(
        "--pairs",
        str(path),
        "--by-intent",
        "--min-pairs",
        "5",
        "--yaml-out",
        str(out),
        "--bootstrap",
        "100",
    )
    assert proc.returncode == 0, proc.stderr
    snippet = yaml.safe_load(out.read_text())
    (intent,) = snippet["routers"]["support-bot"]["intents"]
    assert intent["name"] == "billing" and 0.7 <= intent["cache"]["threshold"] <= 0.99
    assert "routers:" in proc.stdout


def test_train_a_verifier_and_calibrate_with_it(pairs_file: Path, tmp_path: Path) -> None:
    model = tmp_path / "verifier.npz"
    proc = train(pairs_file, "--out", str(model))
    assert model.is_file() and "trained on 5 pairs" in proc.stdout
    out = tmp_path / "learned.json"
    proc = calibrate(
        "--pairs",
        str(pairs_file),
        "--verifier",
        "learned",
        "--verifier-model",
        str(model),
        "--json",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert "trained on these very pairs" in proc.stderr  # in-sample numbers are flagged
    report = json.loads(out.read_text())
    assert report["verifier"]["name"] == "learned"
    assert report["verifier"]["card"]["data_licence"] == "written for this test"
    assert len(report["verifier"]["sha256_16"]) == 16


def test_cross_encoder_held_out_fold_and_per_fold_training(
    pairs_file: Path, tmp_path: Path
) -> None:
    """A cross-encoder trained with a fold held out is measured on that fold alone; with
    --folds, one is trained per fold. Both from the real encoder's weights, one step each."""
    model = tmp_path / "ce"
    proc = train(pairs_file, "--kind", "cross-encoder", "--hold-out", "1/2", "--out", str(model))
    assert proc.returncode == 0, proc.stderr
    card = json.loads((model / "pair_head.json").read_text())["card"]
    assert card["held_out"] == {"fold": 1, "folds": 2, "seed": 0}
    trained = card["pairs"]
    assert 0 < trained < len(PAIRS)
    out = tmp_path / "ce.json"
    args = ["--pairs", str(pairs_file), "--verifier", "cross-encoder", "--json", str(out)]
    proc = calibrate(*args, "--verifier-model", str(model), "--min-score", "0.5")
    assert proc.returncode == 0, proc.stderr
    assert "held out of its training" in proc.stdout
    assert "trained on these very pairs" not in proc.stderr
    report = json.loads(out.read_text())
    assert report["pairs"] == len(PAIRS) - trained  # only the fold it never saw
    assert report["verifier"]["name"] == "cross-encoder" and not report["verifier"]["in_sample"]
    assert report["verifier"]["evaluated_on"].startswith("fold 1 of 2")
    assert report["verifier"]["top"] == 1
    folds = tmp_path / "folds.json"
    per_fold = [*args[:4], "--verifier-model", str(model), "--folds", "2", "--json", str(folds)]
    proc = calibrate(*per_fold)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("step 1/1") == 2  # a model per fold
    report = json.loads(folds.read_text())
    assert report["pairs"] == len(PAIRS) and report["folds"] == 2
    assert report["verifier"]["model"] == "trained per fold on 1/2 of the pairs"
