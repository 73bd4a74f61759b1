"""The dashboard's data: chart points and window breakdowns from timeline buckets.

Pure: ``series(buckets, first, points, size)`` reads ``points`` buckets of ``size``
minutes from index ``first`` (see ``timeline.py`` for what the fields count) and
returns, per point, what the charts draw and, for the whole window, the tables:
model groups, deployments and providers (requests, tokens, cost, latency), keys
and teams, intents, errors by status and type, failed attempts, fallbacks,
degraded answers and PII findings.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from extensions.observe.timeline import LATENCY_BOUNDS_MS, Buckets, error_class, split

WINDOWS = {"hour": (60, 1), "6h": (72, 5), "day": (288, 5)}  # points, minutes per point
SERVED_DIMS = {"G": "model_groups", "D": "deployments", "P": "providers"}
USD_DIGITS = 8

Table = dict[str, dict[str, float]]  # value -> metric -> amount


def percentile_ms(histogram: Mapping[int, float], q: float) -> float | None:
    """The q-quantile of a latency histogram (slot -> count), interpolated within a slot."""
    total = sum(histogram.values())
    if total <= 0:
        return None
    rank, seen = q * total, 0.0
    for slot in range(len(LATENCY_BOUNDS_MS) + 1):
        count = histogram.get(slot, 0.0)
        if count and seen + count >= rank:
            low = 0.0 if slot == 0 else float(LATENCY_BOUNDS_MS[slot - 1])
            if slot == len(LATENCY_BOUNDS_MS):
                return low  # beyond the last bound: report the bound
            high = float(LATENCY_BOUNDS_MS[slot])
            return round(low + (high - low) * (rank - seen) / count, 2)
        seen += count
    return float(LATENCY_BOUNDS_MS[-1])


def tables(fields: Mapping[str, float]) -> dict[str, Table]:
    """Fields grouped as dim -> value -> metric -> amount."""
    out: dict[str, Table] = defaultdict(lambda: defaultdict(dict))
    for name, amount in fields.items():
        dim, value, metric = split(name)
        out[dim][value][metric] = amount
    return out


SLOTS = {f"l{i}": i for i in range(len(LATENCY_BOUNDS_MS) + 1)}


def _histogram(row: Mapping[str, float]) -> dict[int, float]:
    return {SLOTS[m]: v for m, v in row.items() if m in SLOTS}


def _usd(value: float) -> float:
    return round(value, USD_DIGITS)


def _column(table: Table, metric: str, usd: bool = False) -> dict[str, float]:
    """One metric of every value that has it (non-zero)."""
    return {
        v: (_usd(row[metric]) if usd else int(row[metric]))
        for v, row in table.items()
        if row.get(metric)
    }


def _error_row(value: str, row: Mapping[str, float]) -> dict[str, Any]:
    """An ``E`` value (``status/type/source``) as a row of the errors table."""
    status, kind, source = [*value.split("/", 2), "", ""][:3]
    code = int(status) if status.isdigit() else 0
    return {
        "status": status,
        "type": kind,
        "source": source,
        "class": error_class(code, kind, source),
        "requests": int(row.get("n", 0)),
    }


def _errors_by_class(errors: Table) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for value, row in errors.items():
        error = _error_row(value, row)
        out[error["class"]] += error["requests"]
    return dict(out)


def point(t: int, fields: Mapping[str, float]) -> dict[str, Any]:
    """One chart point: the bucket starting at ``t`` (epoch seconds)."""
    by = tables(fields)
    total = by["T"].get("*", {})
    cache = _column(by["C"], "n")
    hits = cache.get("HIT_EXACT", 0) + cache.get("HIT_SEMANTIC", 0)
    looked = hits + cache.get("MISS", 0) + cache.get("SHADOW_HIT", 0)
    latency = _histogram(total)
    groups = by["G"]
    return {
        "t": t,
        "requests": int(total.get("n", 0)),
        "errors": int(total.get("err", 0)),
        "by_action": _column(by["A"], "n"),
        "cache": cache,
        "cache_hit_rate": round(hits / looked, 4) if looked else None,
        "saved_usd": _usd(total.get("saved", 0.0)),
        "saved_by_source": _column(by["S"], "usd", usd=True),
        "spend_usd": _usd(total.get("usd", 0.0)),
        "spend_by_team": _column(by["M"], "usd", usd=True),
        "tokens": int(total.get("tin", 0) + total.get("tout", 0)),
        "p50_ms": percentile_ms(latency, 0.5),
        "p95_ms": percentile_ms(latency, 0.95),
        "p99_ms": percentile_ms(latency, 0.99),
        "by_model_group": _column(groups, "n"),
        "tokens_by_model_group": {
            g: int(r.get("tin", 0) + r.get("tout", 0))
            for g, r in groups.items()
            if r.get("tin") or r.get("tout")
        },
        "spend_by_model_group": _column(groups, "usd", usd=True),
        "p95_by_model_group": {
            g: p95 for g, r in groups.items() if (p95 := percentile_ms(_histogram(r), 0.95))
        },
        "by_deployment": _column(by["D"], "n"),
        "by_provider": _column(by["P"], "n"),
        "errors_by_class": _errors_by_class(by["E"]),
        "fallbacks": int(sum(r.get("fb", 0) for r in by["B"].values())),
        "failed_attempts": int(sum(r.get("n", 0) for r in by["F"].values())),
        "degraded": int(sum(r.get("n", 0) for r in by["R"].values())),
        "pii": int(sum(r.get("n", 0) for r in by["X"].values())),
    }


def _served_rows(table: Table) -> list[dict[str, Any]]:
    rows = []
    for name, row in table.items():
        histogram = _histogram(row)
        rows.append(
            {
                "name": name,
                "requests": int(row.get("n", 0)),
                "errors": int(row.get("err", 0)),
                "tokens_in": int(row.get("tin", 0)),
                "tokens_out": int(row.get("tout", 0)),
                "cost_usd": _usd(row.get("usd", 0.0)),
                "cached_tokens": int(row.get("ctok", 0)),
                "prompt_cache_saved_usd": _usd(row.get("csav", 0.0)),
                "storage_usd": _usd(row.get("csto", 0.0)),
                "p50_ms": percentile_ms(histogram, 0.5),
                "p95_ms": percentile_ms(histogram, 0.95),
            }
        )
    return sorted(rows, key=lambda r: (-r["requests"], r["name"]))


def _who_rows(table: Table, teams: Mapping[str, str | None] | None) -> list[dict[str, Any]]:
    rows = []
    for name, row in table.items():
        entry: dict[str, Any] = {
            "name": name,
            "requests": int(row.get("n", 0)),
            "errors": int(row.get("err", 0)),
            "spend_usd": _usd(row.get("usd", 0.0)),
            "degraded": int(row.get("dg", 0)),
        }
        if teams is not None:
            entry["team"] = teams.get(name)
        rows.append(entry)
    return sorted(rows, key=lambda r: (-r["spend_usd"], -r["requests"], r["name"]))


def breakdowns(
    fields: Mapping[str, float], key_teams: Mapping[str, str | None] | None = None
) -> dict[str, Any]:
    """The window's tables, from its fields summed over every bucket."""
    by = tables(fields)
    total = by["T"].get("*", {})
    cache = _column(by["C"], "n")
    hits = cache.get("HIT_EXACT", 0) + cache.get("HIT_SEMANTIC", 0)
    looked = hits + cache.get("MISS", 0) + cache.get("SHADOW_HIT", 0)
    latency = _histogram(total)
    errors = [_error_row(value, row) for value, row in by["E"].items()]
    intents = []
    for value, row in by["I"].items():
        router, _, intent = value.rpartition("/")
        intents.append(
            {
                "router": router,
                "intent": intent or value,
                "requests": int(row.get("n", 0)),
                "cost_usd": _usd(row.get("usd", 0.0)),
                "saved_usd": _usd(row.get("saved", 0.0)),
            }
        )
    attempts = []
    for value, row in by["F"].items():
        group, _, error = value.rpartition("/")
        attempts.append({"model_group": group, "error": error, "attempts": int(row["n"])})
    return {
        "totals": {
            "requests": int(total.get("n", 0)),
            "errors": int(total.get("err", 0)),
            "saved_usd": _usd(total.get("saved", 0.0)),
            "spend_usd": _usd(total.get("usd", 0.0)),
            "tokens_in": int(total.get("tin", 0)),
            "tokens_out": int(total.get("tout", 0)),
            "cached_tokens": int(total.get("ctok", 0)),
            "prompt_cache_saved_usd": _usd(total.get("csav", 0.0)),
            "storage_usd": _usd(total.get("csto", 0.0)),
            "cache_hit_rate": round(hits / looked, 4) if looked else None,
            "p50_ms": percentile_ms(latency, 0.5),
            "p95_ms": percentile_ms(latency, 0.95),
            "p99_ms": percentile_ms(latency, 0.99),
            "fallbacks": int(sum(r.get("fb", 0) for r in by["B"].values())),
            "failed_attempts": int(sum(r.get("n", 0) for r in by["F"].values())),
            "degraded": int(sum(r.get("n", 0) for r in by["R"].values())),
            "pii": int(sum(r.get("n", 0) for r in by["X"].values())),
        },
        "by_action": _column(by["A"], "n"),
        "cache": cache,
        "savings": _column(by["S"], "usd", usd=True),
        **{name: _served_rows(by[dim]) for dim, name in SERVED_DIMS.items()},
        "keys": _who_rows(by["K"], key_teams or {}),
        "teams": _who_rows(by["M"], None),
        "intents": sorted(intents, key=lambda r: (-r["requests"], r["router"], r["intent"])),
        "errors": sorted(errors, key=lambda r: (-r["requests"], r["status"], r["type"])),
        "error_classes": _errors_by_class(by["E"]),
        "failed_attempts": sorted(attempts, key=lambda r: (-r["attempts"], r["model_group"])),
        "fallbacks": sorted(
            (
                {"route": v, "requests": int(r.get("n", 0)), "fallbacks": int(r.get("fb", 0))}
                for v, r in by["B"].items()
            ),
            key=lambda r: (-r["requests"], r["route"]),
        ),
        "degraded": _column(by["R"], "n"),
        "pii": {"actions": _column(by["X"], "n"), "kinds": _column(by["Y"], "n")},
    }


def series(
    buckets: Buckets,
    first: int,
    points: int,
    size: int,
    key_teams: Mapping[str, str | None] | None = None,
) -> dict[str, Any]:
    """``points`` chart points of ``size`` minutes from bucket ``first``, and the window's
    breakdowns."""
    window: defaultdict[str, float] = defaultdict(float)
    out = []
    for index in range(first, first + points):
        fields = buckets.get(index, {})
        for name, value in fields.items():
            window[name] += value
        out.append(point(index * size * 60, fields))
    return {"step_s": size * 60, "points": out, **breakdowns(window, key_teams)}
