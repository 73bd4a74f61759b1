"""The PII evaluation: span and message scores, the shipped data set, ``gateway eval-pii``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from extensions.cli import main
from extensions.guard.detectors import Finding, Kind
from extensions.guard.evaluation import (
    ALL,
    DATA_DIR,
    Accuracy,
    DataError,
    Example,
    latency,
    load,
    typical_requests,
)

pytestmark = pytest.mark.unit


def f(start: int, end: int, kind: Kind) -> Finding:
    return Finding(0, start, end, kind, "test")


def test_span_scores_overlap_same_kind_and_coverage() -> None:
    example = Example(
        "x", "." * 100, ((0, 10, Kind.EMAIL), (20, 30, Kind.PHONE), (40, 50, Kind.CARD))
    )
    acc = Accuracy()
    # email found whole; phone found in part; card predicted as phone; one false email
    acc.add(
        example,
        [f(0, 10, Kind.EMAIL), f(22, 30, Kind.PHONE), f(40, 50, Kind.PHONE), f(60, 70, Kind.EMAIL)],
    )
    email, phone, card, total = (acc.spans[k] for k in ("email", "phone", "card", ALL))
    assert (email.predicted, email.predicted_correct, email.labelled, email.labelled_found) == (
        2,
        1,
        1,
        1,
    )
    assert (email.precision, email.recall) == (0.5, 1.0)
    assert (phone.precision, phone.recall, phone.coverage) == (0.5, 1.0, 0.0)
    assert (card.predicted, card.recall, card.coverage) == (0, 0.0, 1.0)  # redacted as a phone
    assert (total.predicted, total.predicted_correct, total.labelled, total.labelled_found) == (
        4,
        2,
        3,
        2,
    )
    assert total.labelled_covered == 2


def test_message_scores() -> None:
    acc = Accuracy()
    acc.add(Example("a", "x" * 40, ((0, 5, Kind.EMAIL),)), [f(0, 5, Kind.EMAIL)])
    acc.add(Example("b", "x" * 40, ((0, 5, Kind.IBAN),), ("kind:iban",)), [])
    acc.add(Example("c", "x" * 40, (), ("negative:order_number",)), [f(1, 9, Kind.PHONE)])
    acc.add(Example("d", "x" * 40, ()), [])
    overall = acc.messages[ALL]
    assert (overall.predicted, overall.predicted_correct, overall.labelled) == (2, 1, 2)
    assert (overall.precision, overall.recall) == (0.5, 0.5)
    assert acc.messages["iban"].recall == 0.0
    assert acc.messages["phone"].precision == 0.0
    assert acc.false_positives_by_tag == {"negative:order_number -> phone": 1}
    assert acc.examples == 4


def test_empty_scores_are_perfect_not_a_division_by_zero() -> None:
    score = Accuracy().spans["email"]
    assert (score.precision, score.recall, score.coverage) == (1.0, 1.0, 1.0)


def test_load_refuses_bad_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "text": "x", "spans": [{"start": 0, "end": 1, "kind": "dna"}]}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:1"):
        load(bad)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match="no examples"):
        load(empty)


@pytest.mark.parametrize("split", ["dev", "test"])
def test_shipped_data_is_consistent(split: str) -> None:
    examples = load(DATA_DIR / f"pii_{split}.jsonl")
    assert len(examples) >= 1000
    per_kind = {k: 0 for k in Kind}
    for e in examples:
        for start, end, kind in e.spans:
            assert 0 <= start < end <= len(e.text)
            assert e.text[start:end].strip() == e.text[start:end]
            per_kind[kind] += 1
    assert min(per_kind.values()) >= 80, per_kind
    negatives = sum(1 for e in examples if any(t.startswith("negative:") for t in e.tags))
    assert negatives >= 400


def test_splits_do_not_share_messages() -> None:
    dev = {e.text for e in load(DATA_DIR / "pii_dev.jsonl")}
    test = {e.text for e in load(DATA_DIR / "pii_test.jsonl")}
    shared = dev & test
    assert len(shared) < 0.02 * len(test)  # only fixed sentences without slots repeat


def test_latency_report() -> None:
    examples = load(DATA_DIR / "pii_dev.jsonl")[:50]
    requests = typical_requests(examples, 40)
    assert all(r[0]["role"] == "system" and 3 <= len(r) <= 7 for r in requests)
    result = latency(requests, warmup=5)
    assert result.requests == 40
    assert 0 < result.p50_ms <= result.p99_ms <= result.max_ms


def test_eval_pii_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "small.jsonl"
    rows = [
        {
            "id": "1",
            "text": "mail a.b@example.com",
            "spans": [{"start": 5, "end": 20, "kind": "email"}],
        },
        {"id": "2", "text": "order 555-123-4567", "spans": [], "tags": ["negative:order"]},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "report.json"
    assert main(["eval-pii", "--data", str(data), "--json", str(out), "--requests", "20"]) == 0
    printed = capsys.readouterr().out
    assert "email" in printed and "p99" in printed
    report = json.loads(out.read_text())
    assert report["spans"]["email"]["recall"] == 1.0
    assert report["spans"][ALL]["precision"] == 1.0
    assert report["latency"]["requests"] == 20
    assert "long conversations" in printed and report["latency_long"]["mean_chars"] >= 32_000
    assert main(["eval-pii", "--data", str(tmp_path / "none.jsonl")]) == 2
