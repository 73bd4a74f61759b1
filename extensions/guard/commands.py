"""``gateway eval-pii``: precision / recall per kind and the added latency per request."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from extensions.guard.detectors import Kind
from extensions.guard.evaluation import (
    ALL,
    DEFAULT_DATA,
    Accuracy,
    DataError,
    Latency,
    accuracy,
    latency,
    load,
    long_requests,
    typical_requests,
)

HEADER = f"{'kind':<9} {'spans':>6} {'P':>6} {'R':>6} {'cover':>6}   {'msgs':>5} {'P':>6} {'R':>6}"


def table(acc: Accuracy) -> str:
    rows = [HEADER]
    for key in [*(k.value for k in Kind), ALL]:
        s, m = acc.spans[key], acc.messages[key]
        span_part = f"{s.labelled:>6} {s.precision:>6.3f} {s.recall:>6.3f} {s.coverage:>6.3f}"
        rows.append(f"{key:<9} {span_part}   {m.labelled:>5} {m.precision:>6.3f} {m.recall:>6.3f}")
    return "\n".join(rows)


def report(data: Path, acc: Accuracy, lat: Latency) -> dict[str, Any]:
    return {
        "data": str(data),
        "messages": acc.examples,
        "spans": {k: v.as_dict() for k, v in sorted(acc.spans.items())},
        "messages_by_kind": {k: v.as_dict() for k, v in sorted(acc.messages.items())},
        "false_positives_by_tag": dict(acc.false_positives_by_tag.most_common()),
        "latency": {"what": "redact, every kind, per chat request", **asdict(lat)},
    }


def eval_pii(args: argparse.Namespace) -> int:
    """``args``: data (a JSONL path, None for the shipped test split), json, requests."""
    data: Path = args.data or DEFAULT_DATA
    try:
        examples = load(data)
    except DataError as exc:
        print(f"gateway eval-pii: {exc}", file=sys.stderr)
        return 2
    acc = accuracy(examples)
    lat = latency(typical_requests(examples, args.requests))
    long = latency(long_requests(examples, max(20, args.requests // 20)), warmup=5)
    print(f"{acc.examples} messages from {data}")
    print(table(acc))
    for tag, n in acc.false_positives_by_tag.most_common(10):
        print(f"false positive: {n:>4}  {tag}")
    print(
        f"added latency per request ({lat.requests} chat requests of {lat.mean_chars:.0f} chars "
        f"on average, redact with every kind): p50 {lat.p50_ms:.3f} ms, "
        f"p99 {lat.p99_ms:.3f} ms, max {lat.max_ms:.3f} ms; CPU time p50 {lat.cpu_p50_ms:.3f} ms, "
        f"p99 {lat.cpu_p99_ms:.3f} ms"
    )
    print(
        f"long conversations ({long.requests} of {long.mean_chars:.0f} chars): "
        f"p50 {long.p50_ms:.3f} ms, p99 {long.p99_ms:.3f} ms; "
        f"CPU time p50 {long.cpu_p50_ms:.3f} ms, p99 {long.cpu_p99_ms:.3f} ms"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        full = {**report(data, acc, lat), "latency_long": asdict(long)}
        args.json.write_text(json.dumps(full, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
