"""Read the gateway's Prometheus metrics for ``loadtests/benchmark.py``.

``GET /metrics`` (master key) is scraped before and after each measurement; the
histograms' bucket counts are subtracted, so percentiles describe the measured
window only. Percentiles are estimated from the buckets by linear interpolation
(as Prometheus' ``histogram_quantile`` does). Missing endpoint or metrics: ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

Labels = Mapping[str, str]
LabelFilter = Callable[[Labels], bool]


@dataclass(frozen=True)
class Scrape:
    """Samples by name: (labels, value) pairs."""

    samples: dict[str, list[tuple[dict[str, str], float]]]

    def has(self, prefix: str) -> bool:
        return any(name.startswith(prefix) for name in self.samples)

    def buckets(self, histogram: str, keep: LabelFilter | None = None) -> dict[float, float]:
        """Cumulative bucket counts (upper bound -> count), summed over matching label sets."""
        out: dict[float, float] = {}
        for labels, value in self.samples.get(f"{histogram}_bucket", []):
            rest = {k: v for k, v in labels.items() if k != "le"}
            if keep is not None and not keep(rest):
                continue
            bound = math.inf if labels["le"] in ("+Inf", "inf") else float(labels["le"])
            out[bound] = out.get(bound, 0.0) + value
        return out

    def gauge_max(self, name: str) -> float | None:
        values = [v for _, v in self.samples.get(name, [])]
        return max(values) if values else None


def scrape(base_url: str, key: str, timeout_s: float = 5.0) -> Scrape | None:
    """The parsed ``/metrics`` page, or None when there is none or it has no gateway_ metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        r = httpx.get(
            f"{base_url}/metrics",
            headers={"Authorization": f"Bearer {key}"},
            timeout=timeout_s,
            follow_redirects=True,
        )
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    try:
        for family in text_string_to_metric_families(r.text):
            for s in family.samples:
                samples.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    except ValueError:
        return None
    result = Scrape(samples)
    return result if result.has("gateway_") else None


def delta(before: dict[float, float], after: dict[float, float]) -> dict[float, float]:
    return {b: after[b] - before.get(b, 0.0) for b in after}


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """Estimated ``q`` quantile (seconds) of cumulative ``buckets``; None without data.

    A quantile falling into the +Inf bucket returns the largest finite bound.
    """
    bounds = sorted(buckets)
    if not bounds:
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for b in bounds:
        count = buckets[b]
        if count >= rank:
            if math.isinf(b):
                return prev_bound
            if count == prev_count:
                return b
            return prev_bound + (b - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = b, count
    return prev_bound


def largest_bucket(buckets: dict[float, float]) -> tuple[float, float] | None:
    """(lower, upper) bounds of the highest bucket that received observations."""
    bounds = sorted(buckets)
    prev_bound, prev_count = 0.0, 0.0
    found: tuple[float, float] | None = None
    for b in bounds:
        if buckets[b] > prev_count:
            found = (prev_bound, b)
        prev_bound, prev_count = b, buckets[b]
    return found


def _ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 3)


def summarize(
    hist: str, before: Scrape, after: Scrape, keep: LabelFilter | None = None
) -> dict[str, Any] | None:
    """p50/p99 (ms) and count of ``hist`` observed between the two scrapes."""
    window = delta(before.buckets(hist, keep), after.buckets(hist, keep))
    if not window:
        return None
    count = max(window.values())
    if count <= 0:
        return {"count": 0, "p50_ms": None, "p99_ms": None}
    return {
        "count": int(count),
        "p50_ms": _ms(quantile(window, 0.5)),
        "p99_ms": _ms(quantile(window, 0.99)),
    }


def window_metrics(before: Scrape | None, after: Scrape | None) -> dict[str, Any] | None:
    """The figures the benchmark prints, for one measured window."""
    if before is None or after is None:
        return None

    def label(name: str, value: str) -> LabelFilter:
        return lambda labels: labels.get(name) == value

    out: dict[str, Any] = {
        "classifier": summarize("gateway_classifier_duration_seconds", before, after),
        "cache_exact": summarize(
            "gateway_cache_lookup_duration_seconds", before, after, label("kind", "exact")
        ),
        "cache_semantic": summarize(
            "gateway_cache_lookup_duration_seconds", before, after, label("kind", "semantic")
        ),
        "overhead_answered": summarize(
            "gateway_overhead_duration_seconds", before, after, label("path", "answered")
        ),
        "overhead_forwarded": summarize(
            "gateway_overhead_duration_seconds", before, after, label("path", "forwarded")
        ),
        "loop_lag": summarize("gateway_event_loop_lag_seconds", before, after),
    }
    lag = delta(
        before.buckets("gateway_event_loop_lag_seconds"),
        after.buckets("gateway_event_loop_lag_seconds"),
    )
    top = largest_bucket(lag) if lag else None
    out["loop_lag_largest_bucket_ms"] = None if top is None else [_ms(top[0]), _ms(top[1])]
    gauge_before = before.gauge_max("gateway_event_loop_max_lag_seconds")
    gauge_after = after.gauge_max("gateway_event_loop_max_lag_seconds")
    out["loop_max_lag_ms"] = _ms(gauge_after)  # since the start of the process
    # the largest lag in this window: the gauge if it rose during it, else bounded by the
    # highest histogram bucket that received samples
    if gauge_after is not None and gauge_after > (gauge_before or 0.0):
        out["window_max_lag_ms"] = _ms(gauge_after)
        out["window_max_lag_exact"] = True
    else:
        out["window_max_lag_ms"] = None if top is None else _ms(top[1])
        out["window_max_lag_exact"] = False
    return out
