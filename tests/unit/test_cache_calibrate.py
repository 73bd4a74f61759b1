"""Calibration maths on tiny hand-made data: pairwise and cache-simulation figures."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from extensions.cache.calibrate import (
    Evidence,
    Option,
    Pair,
    PairsError,
    Scored,
    Status,
    Trial,
    confidence,
    cross_validated,
    embed,
    evaluate,
    read_pairs,
    recommend,
    run,
)
from extensions.cache.settings import CacheSettings, Verification
from extensions.cache.verifiers import RulesVerifier, Verdict

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


def trial(*options: tuple[float, bool, Status], answerable: bool = True) -> Trial:
    return Trial(
        answerable,
        tuple(
            Option(sim, Verdict(1.0 if ok else 0.0, None if ok else "x"), status)
            for sim, ok, status in options
        ),
        0.1,
    )


def test_evaluate_pairwise_and_simulation() -> None:
    scored = [
        Scored(1, 0.96, Verdict(1.0)),
        Scored(0, 0.97, Verdict(1.0)),
        Scored(1, 0.80, Verdict(1.0)),
    ]
    trials = [
        trial((0.96, True, Status.RIGHT)),
        trial((0.97, True, Status.WRONG), answerable=False),
        trial((0.80, True, Status.RIGHT)),
    ]
    (point,) = evaluate(Evidence(trials, scored), [(0.95, 0.5)])
    assert point.pairwise_precision == 0.5 and point.pairwise_recall == 0.5
    assert point.sim_hit_rate == pytest.approx(2 / 3)
    assert point.sim_precision == 0.5 and point.sim_recall == 0.5
    scored[1] = Scored(0, 0.97, Verdict(0.0, "numbers"))
    (blocked,) = evaluate(Evidence(trials, scored), [(0.95, 0.5)])
    assert blocked.pairwise_precision == 1.0 and blocked.raw_precision == 0.5


def test_the_first_passing_candidate_is_served() -> None:
    """A refused nearest neighbour does not hide a verified second one; scores are swept."""
    t = Trial(
        True,
        (Option(0.97, Verdict(0.6), Status.WRONG), Option(0.96, Verdict(0.95), Status.RIGHT)),
        0.1,
    )
    low, high = evaluate(Evidence([t], []), [(0.95, 0.5), (0.95, 0.9)])
    assert low.sim_precision == 0.0 and high.sim_precision == 1.0
    assert evaluate(Evidence([t], []), [(0.965, 0.9)])[0].sim_hit_rate == 0.0


def test_unjudged_hits_count_only_in_the_lower_bound() -> None:
    trials = [trial((0.99, True, Status.RIGHT)), trial((0.99, True, Status.UNJUDGED))]
    (p,) = evaluate(Evidence(trials, []), [(0.9, 0.5)])
    assert p.sim_precision == 1.0 and p.sim_precision_lower_bound == 0.5
    assert p.sim_unjudged_share == 0.5


def test_recommend_picks_most_recall_meeting_target() -> None:
    trials = [trial((0.99, True, Status.RIGHT)), trial((0.92, True, Status.WRONG))]
    points = evaluate(Evidence(trials, []), [(0.90, 0.5), (0.95, 0.5), (0.98, 0.5)])
    best = recommend(points, 0.95)
    assert best is not None and best.threshold == 0.95
    assert recommend(points, 1.01) is None


def test_confidence_intervals_are_seeded_and_bracket_the_estimate() -> None:
    statuses = [Status.RIGHT] * 90 + [Status.WRONG] * 10
    evidence = Evidence([trial((0.99, True, s)) for s in statuses], [])
    (point,) = evaluate(evidence, [(0.9, 0.5)])
    ci = confidence(evidence, point, resamples=500, seed=3)
    assert ci == confidence(evidence, point, resamples=500, seed=3)
    low, high = ci["sim_precision"]
    assert low < point.sim_precision == 0.9 < high and high - low < 0.2
    assert ci["sim_hit_rate"] == [1.0, 1.0]


def encode_with(vectors: dict[str, list[float]]) -> Callable[[list[str]], np.ndarray]:
    def encode(texts: list[str]) -> np.ndarray:
        out = np.array([vectors[t] for t in texts], dtype=np.float32)
        normed: np.ndarray = out / np.linalg.norm(out, axis=1, keepdims=True)
        return normed

    return encode


def test_run_goes_through_the_cache_lookup() -> None:
    """The simulation stores every text_a in a real ResponseCache and looks up text_b."""
    encode = encode_with(
        {
            "q one": [1.0, 0.0],
            "q one again": [0.99, 0.141],
            "q two": [0.0, 1.0],
            "something else": [0.6, 0.8],
        }
    )
    pairs = [Pair("q one", "q one again", 1), Pair("q two", "something else", 0)]
    settings = CacheSettings(enabled=True)
    (point,) = run(pairs, encode, settings, [(0.95, 0.5)], RulesVerifier(Verification()))
    assert point.sim_hit_rate == 0.5 and point.sim_precision == 1.0 and point.sim_recall == 1.0


def test_cross_validation_never_scores_a_question_it_trained_on() -> None:
    encode = encode_with({t: [1.0, float(i)] for i, t in enumerate("abcdefgh")})
    pairs = [
        Pair("a", "b", 1),
        Pair("b", "c", 0),
        Pair("d", "e", 1),
        Pair("f", "g", 1),
        Pair("g", "h", 0),
    ]
    texts = embed(pairs, encode)
    seen: list[set[str]] = []

    def verifier_for(train: list[Pair]) -> RulesVerifier:
        seen.append({x for p in train for x in (p.a, p.b)})
        return RulesVerifier(Verification())

    evidence = cross_validated(pairs, texts, CacheSettings(enabled=True), verifier_for, 0.0, 2)
    assert len(seen) == 2 and len(evidence.scored) == len(pairs)
    assert seen[0].isdisjoint(seen[1])  # each fold trained on the other's questions only
