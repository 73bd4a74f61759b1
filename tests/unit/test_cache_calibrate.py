"""Calibration maths on tiny hand-made data: pairwise and cache-simulation figures."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from extensions.cache.calibrate import (
    Pair,
    PairsError,
    evaluate,
    read_pairs,
    recommend,
    run,
)
from extensions.cache.settings import CacheSettings

pytestmark = pytest.mark.unit


def test_read_pairs_tsv_and_csv(tmp_path: Path) -> None:
    tsv = tmp_path / "p.tsv"
    tsv.write_text('text_a\ttext_b\tlabel\nWhat is "x"?\tWhat\'s x?\t1\na\tb\t0\n')
    assert read_pairs(tsv) == [Pair('What is "x"?', "What's x?", 1), Pair("a", "b", 0)]
    csv_file = tmp_path / "p.csv"
    csv_file.write_text('text_a,text_b,label\n"a, b",c,1\n')
    assert read_pairs(csv_file) == [Pair("a, b", "c", 1)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a\tb\n1\t2\n", "missing columns ['label', 'text_a', 'text_b']"),
        ("text_a\ttext_b\tlabel\nx\ty\tyes\n", "line 2: label must be 0 or 1 (got 'yes')"),
        ("text_a\ttext_b\tlabel\n", "no pairs"),
    ],
)
def test_read_pairs_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text(text)
    with pytest.raises(PairsError, match=re.escape(message)):
        read_pairs(path)


def test_evaluate_pairwise_and_simulation() -> None:
    pairs = [Pair("a1", "b1", 1), Pair("a2", "b2", 0), Pair("a3", "b3", 1)]
    cos = np.array([0.96, 0.97, 0.80])
    verified = np.array([True, True, True])
    simulated = [("b1", "a1", 0.96), ("b2", "a2", 0.97), ("b3", None, 0.0)]
    (point,) = evaluate(pairs, cos, verified, simulated, [0.95])
    assert point.pairwise_precision == 0.5 and point.pairwise_recall == 0.5
    assert point.sim_hit_rate == pytest.approx(2 / 3)
    assert point.sim_precision == 0.5 and point.sim_recall == 0.5
    (blocked,) = evaluate(pairs, cos, np.array([True, False, True]), simulated, [0.95])
    assert blocked.pairwise_precision == 1.0 and blocked.raw_precision == 0.5


def test_recommend_picks_lowest_threshold_meeting_target() -> None:
    pairs = [Pair("a1", "b1", 1), Pair("a2", "b2", 0)]
    cos = np.array([0.99, 0.92])
    simulated = [("b1", "a1", 0.99), ("b2", "a2", 0.92)]
    points = evaluate(pairs, cos, np.array([True, True]), simulated, [0.90, 0.95, 0.98])
    best = recommend(points, 0.95)
    assert best is not None and best.threshold == 0.95
    assert recommend(points, 1.01) is None


def test_run_goes_through_the_cache_lookup() -> None:
    """The simulation stores every text_a in a real ResponseCache and looks up text_b."""
    vectors = {"q one": [1.0, 0.0], "q one again": [0.99, 0.141], "q two": [0.0, 1.0],
               "something else": [0.6, 0.8]}  # fmt: skip

    def encode(texts: list[str]) -> np.ndarray:
        out = np.array([vectors[t] for t in texts], dtype=np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    pairs = [Pair("q one", "q one again", 1), Pair("q two", "something else", 0)]
    (point,) = run(pairs, encode, CacheSettings(enabled=True), [0.95])
    assert point.sim_hit_rate == 0.5 and point.sim_precision == 1.0 and point.sim_recall == 1.0
