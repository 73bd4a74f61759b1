"""Pure router logic: head, thresholds, decisions, conversations, datasets, batching."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from extensions.embedding.encoder import BatchingEncoder
from extensions.router.classifier import (
    OOS_LABEL,
    Classification,
    Head,
    Thresholds,
    Verdict,
    classify_row,
    fit_thresholds,
    train_head,
)
from extensions.router.conversation import find_follow_up, render_clarify, text_to_classify
from extensions.router.datasets import DatasetError, load_examples
from extensions.router.decide import decide, render_template
from extensions.router.examples import Example, stratified_split
from extensions.router.settings import Action, Classify, Router, Turns
from extensions.router.training import cached_classifier

pytestmark = pytest.mark.unit


def router(**overrides: Any) -> Router:
    spec: dict[str, Any] = {
        "default": {"model": "gpt-sim"},
        "out_of_scope": {"responses": ["no", "nope"]},
        "intents": [
            {"name": "reset", "description": "reset your password", "examples": ["x"],
             "action": "respond", "respond": {"text": "Go to {url} now",
                                              "variables": {"url": "https://r.example"}}},
            {"name": "bill", "description": "fix a charge", "examples": ["x"],
             "action": "handoff", "handoff": {"queue": "billing", "message": "wait",
                                              "sink": "log"}},
            {"name": "tech", "description": "fix the app", "examples": ["x"], "action": "route",
             "route": {"model": "claude-sim", "system_prompt": "be technical"}},
            {"name": "tech2", "description": "fix the website", "examples": ["x"],
             "action": "route", "route": {"model": "claude-sim", "system_prompt": "be technical"}},
            {"name": "freeze", "description": "freeze your account", "examples": ["x"],
             "action": "respond", "respond": {"text": "frozen"}},
            {"name": "ambig", "description": "freeze", "examples": ["x"], "action": "clarify",
             "clarify": {"between": ["freeze", "tech"]}},
        ],
    }  # fmt: skip
    spec.update(overrides)
    return Router.model_validate(spec)


def head_for(labels: tuple[str, ...]) -> Head:
    k = len(labels)
    return Head(labels, np.eye(k, dtype=np.float32), np.zeros(k, dtype=np.float32))


def probs(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def test_head_probabilities_sum_to_one() -> None:
    head = head_for(("a", "b", "c"))
    p = head.probabilities(np.array([[3.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32))
    assert np.allclose(p.sum(axis=1), 1.0)
    assert p[0].argmax() == 0 and p[1].argmax() == 2


def test_classify_row_verdicts() -> None:
    head = head_for(("a", "b", OOS_LABEL))
    t = Thresholds(min_confidence=0.4, clarify_margin=0.1)
    assert classify_row(head, probs(0.8, 0.1, 0.1), t).verdict is Verdict.IN_SCOPE
    assert classify_row(head, probs(0.2, 0.1, 0.7), t).verdict is Verdict.OUT_OF_SCOPE
    assert classify_row(head, probs(0.35, 0.3, 0.35), t).verdict is Verdict.OUT_OF_SCOPE
    amb = classify_row(head, probs(0.48, 0.45, 0.07), t)
    assert amb.verdict is Verdict.AMBIGUOUS and [r[0] for r in amb.ranked] == ["a", "b"]


def test_train_head_separates_clusters() -> None:
    rng = np.random.default_rng(0)
    centers = np.eye(4, dtype=np.float32)[:3] * 3
    x = np.concatenate([c + rng.normal(0, 0.1, (20, 4)) for c in centers]).astype(np.float32)
    y = ["a"] * 20 + ["b"] * 20 + ["c"] * 20
    head = train_head(x, y)
    assert list(np.array(head.labels)[head.probabilities(x).argmax(axis=1)]) == y


def test_fit_thresholds_respects_targets() -> None:
    head = head_for(("a", "b", OOS_LABEL))
    rng = np.random.default_rng(1)
    in_scope = [probs(p, 1 - p - 0.01, 0.01) for p in rng.uniform(0.6, 0.99, 200)]
    oos = [probs(p, 1 - p - 0.05, 0.05) for p in rng.uniform(0.3, 0.5, 50)]
    rows = np.stack(in_scope + oos)
    labels = ["a"] * 200 + [OOS_LABEL] * 50
    t = fit_thresholds(head, rows, labels, target_false_refusal=0.05, target_clarify_rate=0.1)
    refused_in = np.mean([r[0] < t.min_confidence for r in in_scope])
    assert refused_in <= 0.05 + 1e-9
    assert np.mean([r[0] < t.min_confidence for r in oos]) > 0.9  # separable: most refused
    margins = np.array([r[0] - r[1] for r in in_scope if r[0] >= t.min_confidence])
    assert np.mean(margins < t.clarify_margin) <= 0.1 + 1e-9


def test_decide_each_action() -> None:
    r = router()
    c = classify_row(head_for(("reset", "bill", "tech")), probs(0.9, 0.05, 0.05),
                     Thresholds(0.3, 0.1))  # fmt: skip
    d = decide(r, c, "forgot pwd")
    assert d.action is Action.RESPOND and d.text == "Go to https://r.example now"
    c = classify_row(head_for(("reset", "bill", "tech")), probs(0.05, 0.9, 0.05),
                     Thresholds(0.3, 0.1))  # fmt: skip
    d = decide(r, c, "charged twice")
    assert d.action is Action.HANDOFF and (d.queue, d.sink) == ("billing", "log")
    c = classify_row(head_for(("reset", "bill", "tech")), probs(0.05, 0.05, 0.9),
                     Thresholds(0.3, 0.1))  # fmt: skip
    d = decide(r, c, "app crash")
    assert d.action is Action.ROUTE and d.model == "claude-sim" and d.system_prompt
    oos = classify_row(head_for(("reset", OOS_LABEL)), probs(0.1, 0.9), Thresholds(0.3, 0.1))
    d = decide(r, oos, "weather")
    assert d.action is Action.REFUSE and d.text in {"no", "nope"}
    assert decide(r, oos, "weather") == d  # deterministic per query


def test_ambiguous_between_different_targets_clarifies() -> None:
    c = classify_row(head_for(("reset", "tech")), probs(0.52, 0.48), Thresholds(0.3, 0.1))
    d = decide(router(), c, "hmm")
    assert d.action is Action.CLARIFY and d.candidates == ("reset", "tech")
    assert d.text is not None and "reset your password or fix the app" in d.text


def test_ambiguous_between_same_target_does_not_clarify() -> None:
    c = classify_row(head_for(("tech", "tech2")), probs(0.52, 0.48), Thresholds(0.3, 0.1))
    d = decide(router(), c, "it broke")
    assert d.action is Action.ROUTE and d.model == "claude-sim"


def test_clarify_intent_and_follow_up_round_trip() -> None:
    r = router()
    c = classify_row(head_for(("ambig", "tech")), probs(0.9, 0.1), Thresholds(0.3, 0.1))
    d = decide(r, c, "freeze")
    assert d.action is Action.CLARIFY and d.candidates == ("freeze", "tech")
    messages = [{"role": "user", "content": "freeze"},
                {"role": "assistant", "content": d.text},
                {"role": "user", "content": "my account"}]  # fmt: skip
    follow = find_follow_up(messages, r.clarify.question, r.intents)
    assert follow is not None
    assert follow.candidates == ("freeze", "tech")
    assert (follow.original_query, follow.answer) == ("freeze", "my account")


def test_follow_up_needs_our_exact_question() -> None:
    r = router()
    messages = [{"role": "user", "content": "freeze"},
                {"role": "assistant", "content": "Freeze your account or fix the app?"},
                {"role": "user", "content": "account"}]  # fmt: skip
    assert find_follow_up(messages, r.clarify.question, r.intents) is None


def test_templates_never_evaluate_user_or_config_text() -> None:
    assert render_template("Hi {name} {unknown} {0} {name.__class__}", {"name": "Bo"}) == (
        "Hi Bo {unknown} {0} {name.__class__}"
    )
    intent = router().intents[0]
    evil = intent.model_copy(update={"description": "{options} {__import__('os')}"})
    assert "{__import__('os')}" in render_clarify("do you want to {options}?", [evil, evil])


def test_text_to_classify() -> None:
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "one"},
                {"role": "assistant", "content": "a"},
                {"role": "user", "content": [{"type": "text", "text": "two"}]}]  # fmt: skip
    assert text_to_classify(messages, Classify()) == "two"
    assert text_to_classify(messages, Classify(turns=Turns.LAST_N, last_n=2)) == "one\ntwo"
    assert text_to_classify([{"role": "system", "content": "s"}], Classify()) == ""


def test_stratified_split_holds_out_every_label() -> None:
    ex = [Example(f"{lab}{i}", lab) for lab in "abc" for i in range(10)] + [Example("z", "d")]
    train, held = stratified_split(ex, 0.2)
    assert {e.label for e in held} == {"a", "b", "c"}  # a single example stays in training
    assert len(held) == 6 and len(train) == 25
    assert stratified_split(ex, 0.2) == (train, held)  # deterministic


def fake_encode(texts: list[str]) -> np.ndarray:
    """Deterministic 'embedding': label letter one-hot, with a little noise."""
    rows = []
    for t in texts:
        v = np.full(4, 0.05, dtype=np.float32)
        v["abcd".index(t[0])] = 1.0
        v[3] += (hash(t) % 7) / 100
        rows.append(v / np.linalg.norm(v))
    return np.stack(rows)


def test_cached_classifier_is_reused(tmp_path: Path) -> None:
    ex = [Example(f"{lab}{i}", lab) for lab in "abc" for i in range(10)]
    calls: list[int] = []

    def counting(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return fake_encode(texts)

    from extensions.router.settings import Thresholds as Settings

    first = cached_classifier(ex, counting, "fp1", Settings(), tmp_path)
    n = len(calls)
    again = cached_classifier(ex, counting, "fp1", Settings(), tmp_path)
    assert len(calls) == n  # no re-encoding, no re-training
    assert again.model.labels == first.model.labels
    assert np.allclose(again.model.head.weights, first.model.head.weights)
    assert again.thresholds == first.thresholds
    cached_classifier(ex, counting, "fp2", Settings(), tmp_path)  # new encoder: retrained
    assert len(calls) > n


async def test_batching_encoder_runs_off_loop_and_batches() -> None:
    seen: list[tuple[int, str]] = []
    loop_thread = threading.current_thread().name

    def encode(texts: list[str]) -> np.ndarray:
        seen.append((len(texts), threading.current_thread().name))
        return fake_encode(texts)

    enc = BatchingEncoder(encode, 4, "fake", max_batch_size=64)
    try:
        results = await asyncio.gather(*(enc.encode([f"a{i}"]) for i in range(20)))
        assert all(r.shape == (1, 4) for r in results)
        assert all(name != loop_thread for _, name in seen)
        assert len(seen) < 20  # concurrent requests shared batches
        assert np.allclose(results[3], fake_encode(["a3"]))
    finally:
        enc.close()


async def test_batching_encoder_propagates_errors() -> None:
    def broken(texts: list[str]) -> np.ndarray:
        raise RuntimeError("model crashed")

    enc = BatchingEncoder(broken, 4, "broken")
    try:
        with pytest.raises(RuntimeError, match="model crashed"):
            await enc.encode(["x"])
    finally:
        enc.close()


def test_datasets_csv_and_json(tmp_path: Path) -> None:
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("text,category\nhello,greet\nweather?,oos\n")
    assert load_examples(str(csv_path)) == [Example("hello", "greet"), Example("weather?", "oos")]
    js = tmp_path / "c.json"
    js.write_text(json.dumps({"train": [["a", "x"]], "val": [["b", "x"]],
                              "oos_train": [["c", "oos"]], "oos_val": [["d", "oos"]]}))  # fmt: skip
    assert [e.text for e in load_examples(str(js), "train")] == ["a", "c"]
    assert [e.text for e in load_examples(str(js), "eval")] == ["b", "d"]
    assert [e.text for e in load_examples(f"{js}:val")] == ["b"]
    with pytest.raises(DatasetError, match="no split 'test'"):
        load_examples(f"{js}:test")
    bad = tmp_path / "bad.csv"
    bad.write_text("sentence,y\na,b\n")
    with pytest.raises(DatasetError, match="needs a header"):
        load_examples(str(bad))


def test_changed_subject_after_clarify() -> None:
    from extensions.router.engine import changed_subject

    def c(verdict: Verdict, intent: str | None, conf: float) -> Classification:
        return Classification(verdict, intent, conf, ())

    cands = ("freeze", "tech")
    answer = c(Verdict.IN_SCOPE, "default", 0.8)
    assert not changed_subject(answer, c(Verdict.IN_SCOPE, "freeze", 0.6), cands)
    assert changed_subject(c(Verdict.IN_SCOPE, "reset", 0.9), answer, cands)
    assert not changed_subject(c(Verdict.IN_SCOPE, "reset", 0.3), answer, cands)
    assert not changed_subject(c(Verdict.IN_SCOPE, "tech", 0.9), answer, cands)
    oos = c(Verdict.OUT_OF_SCOPE, None, 0.1)
    assert changed_subject(oos, oos, cands)
    assert not changed_subject(oos, c(Verdict.IN_SCOPE, "freeze", 0.7), cands)


def test_fit_thresholds_limits_refusals_by_the_oos_class_too() -> None:
    head = head_for(("a", "b", OOS_LABEL))
    # in-scope rows where the oos class narrowly beats the right intent (hard, on-topic)
    in_scope = [probs(0.45, 0.05, 0.50)] * 20 + [probs(0.9, 0.05, 0.05)] * 180
    oos = [probs(0.1, 0.05, 0.85)] * 50
    rows = np.stack(in_scope + oos)
    labels = ["a"] * 200 + [OOS_LABEL] * 50
    t = fit_thresholds(head, rows, labels, target_false_refusal=0.05, target_clarify_rate=0.0)
    assert t.oos_ratio > 1.0  # the oos class must now be clearly likelier than the intent
    verdicts = [classify_row(head, r, t).verdict for r in rows]
    assert sum(v is Verdict.OUT_OF_SCOPE for v in verdicts[:200]) <= 10
    assert all(v is Verdict.OUT_OF_SCOPE for v in verdicts[200:])
