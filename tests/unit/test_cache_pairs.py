"""Operator pairs (CSV with router/intent, YAML, shadow JSON lines) and per-intent thresholds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from extensions.cache.calibrate import Scored
from extensions.cache.pairs import Pair, PairsError, read_pairs
from extensions.cache.per_intent import per_group, yaml_snippet
from extensions.cache.settings import IntentCache, RouterCache
from extensions.cache.shadow import ShadowRecord
from extensions.cache.verifiers import Verdict

pytestmark = pytest.mark.unit


def test_csv_with_router_and_intent(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("text_a,text_b,label,router,intent\nx,y,1,support-bot,billing\nu,v,0,,\n")
    assert read_pairs(path) == [Pair("x", "y", 1, "support-bot", "billing"), Pair("u", "v", 0)]


def test_yaml_pairs_and_their_errors(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("pairs:\n  - {text_a: x, text_b: y, label: 1, router: r, intent: i}\n")
    assert read_pairs(path) == [Pair("x", "y", 1, "r", "i")]
    path.write_text("pairs:\n  - {text_a: x, text_b: y, label: 2}\n")
    with pytest.raises(PairsError, match=re.escape("pairs.0.label: Input should be less")):
        read_pairs(path)
    path.write_text("pairs:\n  - {text_a: x, text_b: y, label: 1, colour: red}\n")
    with pytest.raises(PairsError, match="colour: Extra inputs are not permitted"):
        read_pairs(path)


def test_shadow_lines_reviewed_labels_win_over_answer_similarity(tmp_path: Path) -> None:
    records = [
        ShadowRecord(query="q1", cached_query="c1", similarity=0.93, answer_similarity=0.95),
        ShadowRecord(query="q2", cached_query="c2", similarity=0.91, answer_similarity=0.40),
        ShadowRecord(
            query="q3",
            cached_query="c3",
            similarity=0.97,
            answer_similarity=0.99,
            label=0,
            router="r",
            intent="i",
        ),
        ShadowRecord(query="q4", cached_query="c4", similarity=0.90),  # nothing to label it by
    ]
    path = tmp_path / "shadow.jsonl"
    path.write_text("".join(r.to_line() for r in records))
    assert read_pairs(path, answer_agreement=0.9) == [
        Pair("c1", "q1", 1, weak=True),
        Pair("c2", "q2", 0, weak=True),
        Pair("c3", "q3", 0, "r", "i"),
    ]
    path.write_text('{"query": "q"}\n')
    with pytest.raises(PairsError, match="line 1: not a shadow record"):
        read_pairs(path)


def scored(label: int, cosine: float) -> Scored:
    return Scored(label, cosine, Verdict(1.0))


def test_per_intent_threshold_and_pasteable_yaml() -> None:
    pairs, rows = [], []
    for i in range(30):  # billing: duplicates at 0.93+, a different question at 0.90
        same = i % 3 != 0
        pairs.append(Pair(f"a{i}", f"b{i}", int(same), "support-bot", "billing"))
        rows.append(scored(int(same), 0.93 + 0.001 * i if same else 0.90))
    for i in range(5):  # too few to decide
        pairs.append(Pair(f"c{i}", f"d{i}", 1, "support-bot", "orders"))
        rows.append(scored(1, 0.99))
    for i in range(25):  # router-level pairs, no intent: never precise enough
        pairs.append(Pair(f"e{i}", f"f{i}", i % 2, "sales-bot"))
        rows.append(scored(i % 2, 0.99))
    groups = per_group(pairs, rows, 0.5, 0.95, min_pairs=20, resamples=200)
    billing = next(g for g in groups if g.intent == "billing")
    assert billing.threshold == 0.91 and billing.precision == 1.0 and billing.recall == 1.0
    assert billing.precision_ci[0] <= 1.0 == billing.precision_ci[1]
    orders = next(g for g in groups if g.intent == "orders")
    assert orders.threshold is None and "too few" in orders.note
    sales = next(g for g in groups if g.router == "sales-bot")
    assert sales.threshold is None and "no threshold reaches" in sales.note
    snippet = yaml_snippet(groups, 0.95, "rules")
    parsed = yaml.safe_load(snippet)
    intents = parsed["routers"]["support-bot"]["intents"]
    assert intents == [{"name": "billing", "cache": {"threshold": 0.91}}]
    IntentCache.model_validate(intents[0]["cache"])  # what routers.<r>.intents[].cache accepts
    assert "# orders: 5 pairs" in snippet and "sales-bot" in parsed["routers"]


def test_router_level_threshold_is_a_router_cache_block() -> None:
    pairs = [Pair(f"a{i}", f"b{i}", 1, "faq-bot") for i in range(20)]
    rows = [scored(1, 0.97) for _ in range(20)]
    (group,) = per_group(pairs, rows, 0.5, 0.95, resamples=100)
    parsed = yaml.safe_load(yaml_snippet([group], 0.95, "rules"))
    block = parsed["routers"]["faq-bot"]["cache"]
    assert block == {"threshold": 0.7}  # every pair is the same question: the lowest tried
    RouterCache.model_validate(block)
