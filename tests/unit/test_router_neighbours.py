"""The router's examples kept beside the head: the nearest-neighbour vote, the similarity
floor, and how both are fitted out of fold."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from extensions.router.calibration import (
    VOTE_WEIGHTS,
    HeldOut,
    choose_vote_weight,
    held_out_scores,
    out_of_fold_scores,
)
from extensions.router.classifier import (
    OOS_LABEL,
    Head,
    Thresholds,
    Verdict,
    classify_row,
    fit_thresholds,
)
from extensions.router.engine import OFF_LOOP_ROWS, CompiledRouter, scores_of
from extensions.router.examples import Example
from extensions.router.model import IntentModel
from extensions.router.neighbours import Neighbours
from extensions.router.settings import Calibration, NeighbourVote, Router
from extensions.router.settings import Thresholds as ThresholdSettings
from extensions.router.training import cached_classifier, train_classifier

pytestmark = pytest.mark.unit


def unit(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def even(queries: int, labels: int) -> np.ndarray:
    """Head probabilities that favour no label."""
    return np.full((queries, labels), 1.0 / labels, dtype=np.float32)


def test_the_vote_follows_the_nearest_examples_and_the_distance_ignores_oos_rows() -> None:
    x = np.stack([unit(1, 0, 0), unit(0, 1, 0), unit(1, 0.1, 0), unit(0, 0, 1)])
    neighbours = Neighbours.build(x, ["a", "b", "a", OOS_LABEL], ("a", "b", OOS_LABEL), k=2)
    assert neighbours.starts.tolist() == [0, 2, 3, 4]  # rows grouped by label
    assert np.array_equal(neighbours.vectors[1], x[2]) and np.array_equal(
        neighbours.vectors[2], x[1]
    )
    votes, nearest = neighbours.score(np.stack([unit(1, 0.05, 0), unit(0, 0, 1)]), even(2, 3))
    assert np.allclose(votes.sum(axis=1), 1.0)
    assert votes[0].argmax() == 0 and votes[0][0] > 0.99  # both neighbours are a's
    assert votes[1].argmax() == 2  # an oos example votes for refusal
    assert nearest[0] > 0.99  # the two a's
    # the oos row is the nearest row of all, but the distance counts in-scope rows only
    assert nearest[1] == pytest.approx(0.0, abs=1e-6)


def test_temperature_weighs_the_closer_neighbour() -> None:
    x = np.stack([unit(1, 0), unit(0.6, 0.8)])
    query = unit(1, 0.2)[None, :]
    sharp = Neighbours.build(x, ["a", "b"], ("a", "b"), k=2, temperature=0.01)
    soft = Neighbours.build(x, ["a", "b"], ("a", "b"), k=2, temperature=1.0)
    sharp_votes, soft_votes = sharp.score(query, even(1, 2))[0], soft.score(query, even(1, 2))[0]
    assert sharp_votes[0, 0] > 0.99
    assert 0.5 < soft_votes[0, 0] < 0.7


def test_fewer_examples_than_k() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    neighbours = Neighbours.build(x, ["a", "b", "a"], ("a", "b"), k=10)
    queries = np.repeat(x[:1], 5, axis=0)
    votes, nearest = neighbours.score(queries, even(5, 2))
    assert votes.shape == (5, 2) and np.allclose(votes, votes[0])
    assert np.allclose(nearest, (x[0] @ x.T).mean())  # all three rows, k capped at 3


def test_only_the_heads_candidate_intents_and_oos_are_searched() -> None:
    """Two-stage: the head proposes ``candidates`` intents, their examples (and the oos
    ones) are searched; an intent the head ranks low is not, however near it is."""
    x = np.stack([unit(1, 0, 0), unit(0, 1, 0), unit(0, 0, 1), unit(1, 1, 0)])
    labels = ("a", "b", "c", OOS_LABEL)
    neighbours = Neighbours.build(x, ["a", "b", "c", OOS_LABEL], labels, k=1, candidates=1)
    query = unit(1, 0.1, 0)[None, :]
    prefers_b = np.array([[0.1, 0.7, 0.1, 0.1]], np.float32)
    votes, nearest = neighbours.score(query, prefers_b)
    assert votes[0, 0] == 0.0  # a's example, the nearest of all, was not searched
    assert votes[0].argmax() == 3  # the oos example always is: nearer than b's
    assert nearest[0] == pytest.approx(float(query[0] @ x[1]), abs=1e-6)  # b's only
    prefers_a = np.array([[0.7, 0.1, 0.1, 0.1]], np.float32)
    votes, nearest = neighbours.score(query, prefers_a)
    assert votes[0].argmax() == 0 and nearest[0] > 0.99


def test_the_model_blends_the_vote_at_its_weight() -> None:
    head = Head(("a", "b"), np.eye(2, dtype=np.float32) * 4, np.zeros(2, np.float32))
    x = np.stack([unit(1, 0), unit(0, 1)])
    neighbours = Neighbours.build(x, ["b", "a"], ("a", "b"), k=1, temperature=0.01)  # swapped
    query = unit(1, 0.1)[None, :]
    alone = IntentModel(head).scores(query)
    assert alone.nearest.tolist() == [1.0]  # no neighbours: the floor never refuses
    assert alone.probs[0].argmax() == 0
    half = IntentModel(head, neighbours, 0.5).scores(query)
    assert np.allclose(half.probs, 0.5 * alone.probs + 0.5 * np.array([[0.0, 1.0]]), atol=1e-4)
    assert IntentModel(head, neighbours, 0.75).scores(query).probs[0].argmax() == 1
    assert IntentModel(head, neighbours, 0.0).scores(query).probs[0].argmax() == 0


def held(probs: np.ndarray, votes: np.ndarray) -> HeldOut:
    return HeldOut(probs, votes, np.ones(len(probs), np.float32), np.ones(len(probs), bool))


def test_the_vote_weight_is_the_one_with_the_best_held_out_accuracy() -> None:
    classes = ("a", "b", OOS_LABEL)
    labels = ["a"] * 10 + ["b"] * 10 + [OOS_LABEL] * 5
    right = np.array([[0.8, 0.1, 0.1]] * 10 + [[0.1, 0.8, 0.1]] * 10 + [[0.1, 0.1, 0.8]] * 5)
    wrong_b = right.copy()
    wrong_b[10:15] = [0.5, 0.4, 0.1]  # the head confuses half the b's
    votes = right.copy()
    assert choose_vote_weight(held(wrong_b, votes), labels, classes) > 0.0
    assert choose_vote_weight(held(right, votes), labels, classes) == 0.0  # a tie: the smaller
    assert choose_vote_weight(held(right, wrong_b), labels, classes) == 0.0
    assert choose_vote_weight(held(right, votes), [OOS_LABEL] * 25, classes) == 0.0
    assert set(VOTE_WEIGHTS) >= {0.0} and max(VOTE_WEIGHTS) < 1.0  # the head always counts
    one_wrong = right.copy()
    one_wrong[10] = [0.5, 0.4, 0.1]
    # one row better is within the noise (McNemar z = 1): the head alone
    assert choose_vote_weight(held(one_wrong, votes), labels, classes) == 0.0


def test_the_similarity_floor_takes_budget_when_it_refuses_more_out_of_scope_rows() -> None:
    """Off-topic rows the head is sure about, but unlike every example: only the floor
    catches them, and it stays within the false-refusal budget."""
    head = Head(("a", "b", OOS_LABEL), np.eye(3, dtype=np.float32), np.zeros(3, np.float32))
    rng = np.random.default_rng(5)
    top = rng.uniform(0.6, 0.99, 400)
    rows = np.stack(
        [np.array([p, 1 - p - 0.005, 0.005], np.float32) for p in top]
        + [np.array([0.95, 0.045, 0.005], np.float32)] * 40
    )
    nearest = np.concatenate([rng.uniform(0.5, 0.95, 400), rng.uniform(0.1, 0.45, 40)])
    nearest[:4] = 0.3  # a few in-scope examples are as far out (the budget's 1%)
    labels = ["a"] * 400 + [OOS_LABEL] * 40
    nearest = nearest.astype(np.float32)
    t = fit_thresholds(head, rows, labels, 0.01, 0.0, nearest)
    assert -1.0 < t.min_similarity < 0.55

    def refused(i: int) -> bool:
        return classify_row(head, rows[i], t, float(nearest[i])).verdict is Verdict.OUT_OF_SCOPE

    assert sum(refused(i) for i in range(400)) <= 4
    assert sum(refused(i) for i in range(400, 440)) >= 36
    without = fit_thresholds(head, rows, labels, 0.01, 0.0)
    assert without.min_similarity == -1.0
    assert (
        sum(classify_row(head, r, without).verdict is Verdict.OUT_OF_SCOPE for r in rows[400:]) < 5
    )


def test_no_floor_when_it_buys_nothing() -> None:
    head = Head(("a", "b", OOS_LABEL), np.eye(3, dtype=np.float32), np.zeros(3, np.float32))
    rows = np.array([[0.9, 0.05, 0.05]] * 200 + [[0.05, 0.05, 0.9]] * 20, np.float32)
    nearest = np.full(220, 0.8, np.float32)
    t = fit_thresholds(head, rows, ["a"] * 200 + [OOS_LABEL] * 20, 0.01, 0.0, nearest)
    assert t.min_similarity == -1.0  # the oos class already refuses all: the floor stays off


def test_out_of_fold_scores_keep_the_neighbours_from_their_own_fold() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = ["a", "b"] * 20
    scores = out_of_fold_scores(x, labels, ("a", "b"), 5, 20.0, NeighbourVote(k=1))
    # in-sample, every row would be its own nearest neighbour at cosine 1
    assert scores.scored.all() and (scores.nearest < 0.999).all()
    assert np.allclose(scores.votes.sum(axis=1), 1.0)
    bare = out_of_fold_scores(x, labels, ("a", "b"), 5, 20.0)
    assert np.array_equal(bare.probs, scores.probs)
    assert (bare.votes == 0).all() and (bare.nearest == 1.0).all()


def encode_axes(texts: list[str]) -> np.ndarray:
    """Intents ``a``/``b``/``c`` along axes 0–2; ``o<i>`` (off-topic examples) and ``q<i>``
    (off-topic queries) mostly along axis 0 (the linear head leans to ``a`` on them) with
    a little of an axis of their own; every text a little noisy."""
    dim = 64
    rows = []
    for t in texts:
        rng = np.random.default_rng(sum(map(ord, t)) * 31 + len(t))
        v = rng.normal(0, 0.01, dim)
        if t[0] in "abc":
            v["abc".index(t[0])] += 1.0
        else:
            v[0] += 1.0
            v[3 + (int(t[1:]) % (dim - 3))] += 0.3
        rows.append(v / np.linalg.norm(v))
    return np.stack(rows).astype(np.float32)


def test_a_router_refuses_queries_unlike_any_example() -> None:
    examples = [Example(f"{lab}{i}", lab) for lab in "abc" for i in range(40)]
    examples += [Example(f"o{i}", OOS_LABEL) for i in range(30)]
    settings = ThresholdSettings(target_false_refusal=0.05)
    trained = train_classifier(examples, encode_axes, settings)
    model, t = trained.model, trained.thresholds
    assert model.neighbours is not None and t.min_similarity > -1.0
    queries = encode_axes([f"q{i}" for i in range(30, 60)])  # axes no example used
    scores = model.scores(queries)
    verdicts = [
        classify_row(model, p, t, float(n)).verdict
        for p, n in zip(scores.probs, scores.nearest, strict=True)
    ]
    assert sum(v is Verdict.OUT_OF_SCOPE for v in verdicts) >= 29
    on_topic = model.scores(encode_axes([f"b{i}" for i in range(100, 130)]))
    assert all(
        classify_row(model, p, t, float(n)).intent == "b"
        for p, n in zip(on_topic.probs, on_topic.nearest, strict=True)
    )
    off = train_classifier(examples, encode_axes, settings, vote=NeighbourVote(enabled=False))
    assert off.model.neighbours is None and off.model.vote_weight == 0.0
    assert off.thresholds.min_similarity == -1.0
    alone = off.model.scores(queries)
    refused_alone = sum(
        classify_row(off.model, p, off.thresholds).verdict is Verdict.OUT_OF_SCOPE
        for p in alone.probs
    )
    assert refused_alone <= 25  # the head alone lets several through


def test_the_neighbours_are_cached_with_the_head(tmp_path: Path) -> None:
    examples = [Example(f"{lab}{i}", lab) for lab in "abc" for i in range(40)]
    examples += [Example(f"o{i}", OOS_LABEL) for i in range(30)]
    settings = ThresholdSettings(target_false_refusal=0.05)
    first = cached_classifier(examples, encode_axes, "fp", settings, tmp_path)
    again = cached_classifier(examples, fail_to_encode, "fp", settings, tmp_path)
    assert first.model.neighbours is not None and again.model.neighbours is not None
    assert np.array_equal(again.model.neighbours.vectors, first.model.neighbours.vectors)
    assert np.array_equal(again.model.neighbours.starts, first.model.neighbours.starts)
    assert again.model.neighbours.labels == first.model.neighbours.labels
    assert again.model.vote_weight == first.model.vote_weight
    assert again.thresholds == first.thresholds


def fail_to_encode(texts: list[str]) -> np.ndarray:
    raise AssertionError("a cached router is not encoded again")


def test_a_router_whose_vote_and_floor_buy_nothing_keeps_no_examples() -> None:
    examples = [Example(f"{lab}{i}", lab) for lab in "abc" for i in range(20)]
    trained = train_classifier(examples, encode_axes, ThresholdSettings())
    assert trained.thresholds.min_similarity == -1.0 and trained.model.vote_weight == 0.0
    assert trained.model.neighbours is None  # no memory, no scan per query


def off_topic_router() -> list[Example]:
    """Three intents and off-topic examples the floor is fitted to refuse (see
    ``test_a_router_refuses_queries_unlike_any_example``)."""
    examples = [Example(f"{lab}{i}", lab) for lab in "abc" for i in range(40)]
    return examples + [Example(f"o{i}", OOS_LABEL) for i in range(30)]


def test_a_pinned_out_of_scope_threshold_turns_the_floor_off() -> None:
    fitted = train_classifier(
        off_topic_router(), encode_axes, ThresholdSettings(target_false_refusal=0.05)
    )
    assert fitted.thresholds.min_similarity > -1.0  # unpinned, the floor is on here
    pinned = ThresholdSettings(target_false_refusal=0.05, out_of_scope=0.4)
    trained = train_classifier(off_topic_router(), encode_axes, pinned)
    assert trained.thresholds.min_similarity == -1.0
    assert trained.thresholds.min_confidence == 0.4
    assert trained.thresholds.oos_ratio == 1.0  # the oos class still refuses as the argmax


def test_validation_and_holdout_fit_the_vote_and_floor_on_unseen_rows() -> None:
    examples = off_topic_router()
    validation = [Example(f"{lab}{i}", lab) for lab in "abc" for i in range(200, 215)]
    validation += [Example(f"o{i}", OOS_LABEL) for i in range(100, 110)]
    settings = ThresholdSettings(target_false_refusal=0.05)
    with_val = train_classifier(examples, encode_axes, settings, validation)
    assert with_val.model.neighbours is not None
    assert with_val.model.neighbours.vectors.shape[0] == len(examples) + len(validation)
    assert with_val.thresholds.min_similarity > -1.0
    holdout = ThresholdSettings(target_false_refusal=0.05, calibration=Calibration.HOLDOUT)
    held = train_classifier(examples, encode_axes, holdout)
    assert held.model.labels == ("a", "b", "c", OOS_LABEL)
    scores = held_out_scores(
        encode_axes([e.text for e in examples]),
        [e.label for e in examples],
        encode_axes([e.text for e in validation]),
        [e.label for e in validation],
        ("a", "b", "c", OOS_LABEL),
        20.0,
        NeighbourVote(),
    )
    assert scores.scored.all() and (scores.nearest < 0.9999).all()  # none is its own neighbour
    assert np.allclose(scores.votes.sum(axis=1), 1.0)


def test_a_cache_file_of_the_old_format_is_retrained(tmp_path: Path) -> None:
    examples = off_topic_router()
    settings = ThresholdSettings(target_false_refusal=0.05)
    first = cached_classifier(examples, encode_axes, "fp", settings, tmp_path)
    (path,) = (tmp_path / "heads").glob("*.npz")
    with np.load(path) as data:
        old = {k: data[k] for k in data.files if k not in ("vectors", "starts", "vote")}
    np.savez(path, **old)  # what format 4 wrote: no neighbours
    again = cached_classifier(examples, encode_axes, "fp", settings, tmp_path)
    assert again.model.neighbours is not None and again.thresholds == first.thresholds


def test_a_query_scans_the_candidates_and_the_oos_examples_only() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(100 * 5 + 30, 8)).astype(np.float32)
    labels = [f"i{j:03d}" for j in range(100) for _ in range(5)] + [OOS_LABEL] * 30
    names = tuple(sorted(set(labels)))
    neighbours = Neighbours.build(x, labels, names, candidates=10)
    assert neighbours.scanned_rows == 10 * 5 + 30
    assert Neighbours.build(x[:500], labels[:500], names[:-1]).scanned_rows == 50


ROUTE = {"model": "gpt-sim"}
NO = {"responses": ["no"]}


def test_the_compiled_router_refuses_on_distance() -> None:
    intents = [
        {"name": n, "description": n * 3, "examples": ["x"], "action": "route", "route": ROUTE}
        for n in ("a", "b")
    ]
    spec = Router.model_validate({"default": ROUTE, "out_of_scope": NO, "intents": intents})
    head = Head(("a", "b"), np.eye(2, 3, dtype=np.float32) * 5, np.zeros(2, np.float32))
    neighbours = Neighbours.build(np.stack([unit(1, 0, 0), unit(0, 1, 0)]), ["a", "b"], ("a", "b"))
    router = CompiledRouter(
        "r", spec, IntentModel(head, neighbours), Thresholds(0.3, 0.0, 1.0, 0.5)
    )
    near, far = router.classify(router.model.scores(np.stack([unit(1, 0, 0), unit(0.3, 0, 1)])))
    assert near.verdict is Verdict.IN_SCOPE and near.intent == "a"
    assert far.verdict is Verdict.OUT_OF_SCOPE  # the head says "a"; nothing like it was seen


def test_neighbour_settings_are_strict() -> None:
    assert NeighbourVote().enabled and NeighbourVote().k == 10
    with pytest.raises(ValueError, match="Extra inputs"):
        NeighbourVote.model_validate({"enabled": True, "weight": 0.5})
    with pytest.raises(ValueError, match="greater than"):
        NeighbourVote.model_validate({"temperature": 0})


async def test_a_large_neighbour_scan_runs_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads: list[int] = []
    real = Neighbours.score

    def recording(
        self: Neighbours, x: np.ndarray, probs: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        threads.append(threading.get_ident())
        return real(self, x, probs)

    monkeypatch.setattr(Neighbours, "score", recording)
    head = Head(("a", "b"), np.eye(2, 4, dtype=np.float32), np.zeros(2, np.float32))
    rng = np.random.default_rng(2)

    def model(rows: int) -> IntentModel:
        x = rng.normal(size=(rows, 4)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return IntentModel(head, Neighbours.build(x, ["a", "b"] * (rows // 2), ("a", "b")), 0.5)

    query = unit(1, 0, 0, 0)[None, :]
    small = await scores_of(model(100), query)
    large = await scores_of(model(OFF_LOOP_ROWS), query)
    assert threads[0] == threading.get_ident()  # inline: cheaper than a thread hop
    assert threads[1] != threading.get_ident()
    assert small.probs.shape == large.probs.shape == (1, 2)
