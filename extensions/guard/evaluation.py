"""Precision, recall and added latency of the PII detectors on a labelled JSONL set.

Span level: a predicted span counts as correct when it overlaps a labelled span of
the same kind; a labelled span counts as found when such a prediction overlaps it.
``covered`` is stricter and is what redaction needs: the labelled span's characters
are all inside predicted spans (of any kind). Message level: a message is positive
for a kind when it has a labelled span of that kind (``all``: of any kind).
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from extensions.guard.detectors import Finding, Kind, scan_text
from extensions.guard.messages import message_texts, with_texts
from extensions.guard.policy import apply
from extensions.guard.settings import GuardAction, RoutePolicy

DATA_DIR = Path(__file__).parent / "data"
DEFAULT_DATA = DATA_DIR / "pii_test.jsonl"
ALL = "all"
SYSTEM_PROMPT = (
    "You are a helpful assistant for an online shop. Answer briefly and politely. "
    "If the customer asks about an order, ask for the order number. Never invent "
    "prices, delivery dates or policies; say you will check instead. Use the "
    "customer's language. Keep answers under 120 words unless asked for detail."
)


class DataError(ValueError):
    """The evaluation file is missing or malformed."""


@dataclass(frozen=True, slots=True)
class Example:
    id: str
    text: str
    spans: tuple[tuple[int, int, Kind], ...]
    tags: tuple[str, ...] = ()


def load(path: Path) -> list[Example]:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    examples = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            spans = tuple((int(s["start"]), int(s["end"]), Kind(s["kind"])) for s in row["spans"])
            examples.append(Example(str(row["id"]), row["text"], spans, tuple(row.get("tags", []))))
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path}:{n}: {exc}") from None
    if not examples:
        raise DataError(f"{path}: no examples")
    return examples


@dataclass(slots=True)
class Score:
    """Counts for one kind (or ``all``) at one level."""

    predicted: int = 0
    predicted_correct: int = 0
    labelled: int = 0
    labelled_found: int = 0
    labelled_covered: int = 0  # span level only

    @property
    def precision(self) -> float:
        return self.predicted_correct / self.predicted if self.predicted else 1.0

    @property
    def recall(self) -> float:
        return self.labelled_found / self.labelled if self.labelled else 1.0

    @property
    def coverage(self) -> float:
        return self.labelled_covered / self.labelled if self.labelled else 1.0

    def as_dict(self) -> dict[str, float | int]:
        rates = {"precision": self.precision, "recall": self.recall, "coverage": self.coverage}
        return {**asdict(self), **{k: round(v, 4) for k, v in rates.items()}}


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _covered(span: tuple[int, int], predicted: Sequence[Finding]) -> bool:
    pos = span[0]
    for f in sorted(predicted, key=lambda f: f.start):
        if f.start <= pos < f.end:
            pos = f.end
    return pos >= span[1]


@dataclass
class Accuracy:
    spans: dict[str, Score] = field(default_factory=lambda: defaultdict(Score))
    messages: dict[str, Score] = field(default_factory=lambda: defaultdict(Score))
    false_positives_by_tag: Counter[str] = field(default_factory=Counter)
    examples: int = 0

    def add(self, example: Example, predicted: Sequence[Finding]) -> None:
        self.examples += 1
        gold = example.spans
        for f in predicted:
            ok = any(k is f.kind and _overlaps((f.start, f.end), (s, e)) for s, e, k in gold)
            for key in (f.kind.value, ALL):
                self.spans[key].predicted += 1
                self.spans[key].predicted_correct += ok
            if not ok:
                for tag in example.tags or ("untagged",):
                    self.false_positives_by_tag[f"{tag} -> {f.kind.value}"] += 1
        for s, e, k in gold:
            found = any(f.kind is k and _overlaps((f.start, f.end), (s, e)) for f in predicted)
            covered = _covered((s, e), predicted)
            for key in (k.value, ALL):
                self.spans[key].labelled += 1
                self.spans[key].labelled_found += found
                self.spans[key].labelled_covered += covered
        gold_kinds = {k.value for _, _, k in gold}
        pred_kinds = {f.kind.value for f in predicted}
        for key in {*gold_kinds, *pred_kinds}:
            score = self.messages[key]
            score.predicted += key in pred_kinds
            score.predicted_correct += key in pred_kinds and key in gold_kinds
            score.labelled += key in gold_kinds
            score.labelled_found += key in pred_kinds and key in gold_kinds
        any_gold, any_pred = bool(gold_kinds), bool(pred_kinds)
        overall = self.messages[ALL]
        overall.predicted += any_pred
        overall.predicted_correct += any_pred and any_gold
        overall.labelled += any_gold
        overall.labelled_found += any_pred and any_gold


def accuracy(examples: Iterable[Example]) -> Accuracy:
    result = Accuracy()
    for example in examples:
        result.add(example, scan_text(example.text))
    return result


def typical_requests(examples: Sequence[Example], count: int, seed: int = 7) -> list[list[Any]]:
    """Chat requests: a system prompt and 2-6 turns drawn from the examples' texts."""
    rng = random.Random(seed)
    requests = []
    for _ in range(count):
        turns = rng.randint(2, 6)
        messages: list[Any] = [{"role": "system", "content": SYSTEM_PROMPT}]
        for t in range(turns):
            role = "user" if t % 2 == 0 else "assistant"
            messages.append({"role": role, "content": rng.choice(examples).text})
        requests.append(messages)
    return requests


def long_requests(examples: Sequence[Example], count: int, chars: int = 32_000) -> list[list[Any]]:
    """Long conversations (about ``chars`` characters each) built the same way."""
    rng = random.Random(11)
    requests = []
    for _ in range(count):
        messages: list[Any] = [{"role": "system", "content": SYSTEM_PROMPT}]
        size = len(SYSTEM_PROMPT)
        while size < chars:
            text = rng.choice(examples).text
            messages.append({"role": "user" if len(messages) % 2 else "assistant", "content": text})
            size += len(text)
        requests.append(messages)
    return requests


@dataclass(frozen=True, slots=True)
class Latency:
    """Wall-clock and CPU (this thread's) milliseconds per request; CPU time leaves out
    the waits for a core that other processes on a busy machine cause."""

    requests: int
    mean_chars: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_p50_ms: float
    cpu_p99_ms: float


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    return round(sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))], 4)


def redact_messages(policy: RoutePolicy, messages: Sequence[Any]) -> list[Any]:
    """What the request path does: texts out, scan and act, messages back."""
    verdict = apply(policy, message_texts(messages))
    return with_texts(messages, verdict.texts)


def latency(requests: Sequence[Sequence[Any]], warmup: int = 50) -> Latency:
    """Time ``redact_messages`` with every kind enabled, once per request after a warm-up."""
    policy = RoutePolicy(action=GuardAction.REDACT)
    for messages in requests[:warmup]:
        redact_messages(policy, messages)
    wall, cpu = [], []
    for messages in requests:
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        redact_messages(policy, messages)
        cpu.append((time.thread_time_ns() - c0) / 1e6)
        wall.append((time.perf_counter_ns() - t0) / 1e6)
    wall.sort()
    cpu.sort()
    chars = statistics.fmean(sum(len(m["content"]) for m in messages) for messages in requests)
    return Latency(
        requests=len(wall),
        mean_chars=round(chars, 1),
        p50_ms=_percentile(wall, 0.5),
        p99_ms=_percentile(wall, 0.99),
        max_ms=round(wall[-1], 4),
        cpu_p50_ms=_percentile(cpu, 0.5),
        cpu_p99_ms=_percentile(cpu, 0.99),
    )
