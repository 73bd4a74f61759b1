"""Analytics over the request log (``gateway report``): pure functions, no gateway needed.

The input is the request log of the gateway: JSON lines, one object per request (the
record format of the observability spec), in ``requests-<pid>.jsonl`` files and their
rotated copies ``requests-<pid>.jsonl.1``, ``.2``, ... . Paths may be files, folders
(their ``requests-*.jsonl`` and ``requests-*.jsonl.N`` files) or glob patterns.

Lines that are not a JSON object with a parseable ``ts`` are skipped and counted as
malformed; records whose ``event`` is not ``"request"`` are skipped and counted apart.
Fields of the wrong type count as absent: a bad line never stops a report.

The window is half-open, ``start <= ts < end`` (either side may be open); ``--since 1h``
is the hour before now.

Definitions:

* cache hit rate: ``HIT_EXACT + HIT_SEMANTIC`` over the chat requests that looked the
  cache up (``HIT_EXACT``, ``HIT_SEMANTIC``, ``SHADOW_HIT``, ``MISS``); ``BYPASS`` and
  ``NONE`` are reported but not in the denominator;
* savings by source: ``cache`` for cache hits, ``router`` for answers the router gave
  without a model (RESPOND, HANDOFF, CLARIFY, REFUSE), ``other`` for anything else;
* router requests: records with a ``router``; refusal and clarification rates are REFUSE
  and CLARIFY over them;
* errors: records with status >= 400 or an ``error`` object;
* latency percentiles use the **nearest-rank** method: the p-th percentile of n sorted
  values is the value at (1-based) rank ``ceil(p / 100 * n)``, always an observed value.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HIT_OUTCOMES = ("HIT_EXACT", "HIT_SEMANTIC")
LOOKUP_OUTCOMES = (*HIT_OUTCOMES, "SHADOW_HIT", "MISS")
NO_LOOKUP_OUTCOMES = ("BYPASS", "NONE")
ROUTER_ANSWERS = ("RESPOND", "HANDOFF", "CLARIFY", "REFUSE")
NONE_LABEL = "(none)"
MISSING_LABEL = "(missing)"
LOG_FILE = re.compile(r"requests-.*\.jsonl(\.\d+)?")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MONEY_DIGITS = 9


class ReportError(Exception):
    """A missing path, a bad duration or time: the CLI prints it on one line, exit 2."""


# --- window ------------------------------------------------------------------


def parse_duration(text: str) -> timedelta:
    """``30m``, ``1h``, ``2d``, ``90s``, ``1w``, ``1.5h`` (more than zero)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or float(match[1]) <= 0:
        raise ReportError(
            f"bad duration {text!r}: use a number above 0 and a unit s, m, h, d or w "
            "(e.g. 30m, 1h, 2d)"
        )
    return timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])


def parse_time(text: str) -> datetime:
    """An ISO-8601 time (``Z`` or an offset; UTC when it has none), aware and in UTC."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ReportError(f"bad time {text!r}: use ISO-8601, e.g. 2026-11-25T03:00:00Z") from None
    return _utc(when)


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


@dataclass(frozen=True)
class Window:
    """``start <= ts < end``; ``None`` leaves that side open."""

    start: datetime | None = None
    end: datetime | None = None

    def contains(self, ts: datetime) -> bool:
        return (self.start is None or ts >= self.start) and (self.end is None or ts < self.end)


def window_from(since: str | None, start: str | None, end: str | None, now: datetime) -> Window:
    """The window of ``--since`` (before ``now``) or ``--start``/``--end``; none: all time."""
    if since is not None and (start is not None or end is not None):
        raise ReportError("use either --since or --start/--end, not both")
    if since is not None:
        now = _utc(now)
        return Window(now - parse_duration(since), now)
    window = Window(
        parse_time(start) if start is not None else None,
        parse_time(end) if end is not None else None,
    )
    if window.start is not None and window.end is not None and window.start >= window.end:
        raise ReportError(f"--start {start} is not before --end {end}")
    return window


# --- input -------------------------------------------------------------------


def _folder_logs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and LOG_FILE.fullmatch(p.name))


def log_files(paths: Sequence[str | Path]) -> list[Path]:
    """The files to read: files as given, folders' request logs, glob matches (in order,
    each once). A path that does not exist or matches nothing is a ``ReportError``."""
    found: list[Path] = []
    for raw in paths:
        text = str(raw)
        if glob.has_magic(text):
            matches = [Path(m) for m in sorted(glob.glob(text, recursive=True))]
            if not matches:
                raise ReportError(f"{text}: no file matches this pattern")
        else:
            matches = [Path(text)]
        for path in matches:
            if path.is_dir():
                logs = _folder_logs(path)
                if not logs and not glob.has_magic(text):
                    raise ReportError(f"{path}: no requests-*.jsonl files in this folder")
                found.extend(logs)
            elif path.is_file():
                found.append(path)
            else:
                raise ReportError(f"{path}: no such file or folder")
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    if not unique:
        raise ReportError(f"no request log files in {' '.join(map(str, paths))}")
    return list(unique.values())


def parse_record(line: str | bytes) -> tuple[datetime, dict[str, Any]] | None:
    """``(ts, record)`` of one log line; ``None`` when it is not a JSON object with an
    ISO ``ts``."""
    try:
        record = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("ts"), str):
        return None
    try:
        ts = datetime.fromisoformat(record["ts"])
    except ValueError:
        return None
    return _utc(ts), record


# --- result ------------------------------------------------------------------


@dataclass
class Scan:
    """What was read: files, non-blank lines, and what was left out of the report."""

    files: list[str] = field(default_factory=list)
    lines: int = 0
    malformed_lines: int = 0
    other_events: int = 0
    outside_window: int = 0


@dataclass
class CostRow:
    name: str
    requests: int
    cost_usd: float
    avg_cost_usd: float


@dataclass
class LatencyRow:
    route: str
    samples: int
    p50_ms: float
    p95_ms: float
    max_ms: float


@dataclass
class RouterRow:
    router: str
    requests: int
    refusals: int
    refusal_rate: float | None
    clarifications: int
    clarification_rate: float | None
    handoffs: int


@dataclass
class CacheSummary:
    outcomes: dict[str, dict[str, int]]  # endpoint -> outcome -> requests
    chat_lookups: int
    chat_hits: int
    chat_hit_rate: float | None
    chat_shadow_hits: int
    chat_bypass: int
    chat_none: int


@dataclass
class Savings:
    total_usd: float
    by_source: dict[str, float]  # cache, router (and other when any)


@dataclass
class RouterSummary:
    requests: int
    refusals: int
    refusal_rate: float | None
    clarifications: int
    clarification_rate: float | None
    handoffs: int
    handoffs_by_intent: dict[str, int]
    by_router: list[RouterRow]


@dataclass
class Errors:
    requests: int
    rate: float | None
    by_status: dict[str, int]  # statuses >= 400
    by_type: dict[str, int]


@dataclass
class Fallbacks:
    requests: int  # requests with fallbacks > 0
    total: int  # sum of fallbacks
    retried_requests: int
    retries: int


@dataclass
class PromptCacheRow:
    model_group: str
    requests: int  # requests that read or wrote the provider's prompt cache
    read_tokens: int
    write_tokens: int
    saved_usd: float
    storage_usd: float


@dataclass
class Report:
    window_start: str | None
    window_end: str | None
    scan: Scan
    requests: int
    first_request: str | None
    last_request: str | None
    total_cost_usd: float
    by_route: dict[str, int]
    by_intent: dict[str, int]  # "router/intent"
    by_action: dict[str, int]
    cache: CacheSummary
    savings: Savings
    router: RouterSummary
    intents_by_cost: list[CostRow]
    spend_by_team: list[CostRow]
    spend_by_model_group: list[CostRow]
    latency_by_route: list[LatencyRow]
    latency_overall: LatencyRow | None
    errors: Errors
    fallbacks: Fallbacks
    prompt_cache: list[PromptCacheRow]
    degraded: dict[str, int]  # budget ladder rungs ("cache_only", "a -> b") -> answers
    pii: dict[str, int]  # "action:kind" -> requests

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


# --- summary -----------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile: the value at 1-based rank ``ceil(p/100 * n)`` of the sorted
    values (``p`` in (0, 100])."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 < p <= 100:
        raise ValueError(f"percentile {p} not in (0, 100]")
    ordered = sorted(values)
    rank = max(1, math.ceil(p * len(ordered) / 100))
    return ordered[rank - 1]


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _money(value: float) -> float:
    return round(value, _MONEY_DIGITS) + 0.0  # + 0.0: no -0.0


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _iso(when: datetime | None) -> str | None:
    if when is None:
        return None
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _sorted_counts(counts: Mapping[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def intent_key(router: str | None, intent: str) -> str:
    return f"{router or NONE_LABEL}/{intent}"


class _Tally:
    """Running sums over the records in the window."""

    def __init__(self) -> None:
        self.requests = 0
        self.first: datetime | None = None
        self.last: datetime | None = None
        self.cost = 0.0
        self.by_route: Counter[str] = Counter()
        self.by_intent: Counter[str] = Counter()
        self.by_action: Counter[str] = Counter()
        self.cache: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.saved = 0.0
        self.saved_by: dict[str, float] = {"cache": 0.0, "router": 0.0}
        self.routers: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.handoffs: Counter[str] = Counter()
        self.intent_cost: defaultdict[str, list[float]] = defaultdict(lambda: [0, 0.0])
        self.team_cost: defaultdict[str, list[float]] = defaultdict(lambda: [0, 0.0])
        self.group_cost: defaultdict[str, list[float]] = defaultdict(lambda: [0, 0.0])
        self.latency: defaultdict[str, list[float]] = defaultdict(list)
        self.errors = 0
        self.errors_by_status: Counter[int] = Counter()
        self.errors_by_type: Counter[str] = Counter()
        self.fallback_requests = 0
        self.fallbacks = 0
        self.retried_requests = 0
        self.retries = 0
        self.prompt_cache: defaultdict[str, list[float]] = defaultdict(lambda: [0, 0, 0, 0.0, 0.0])
        self.degraded: Counter[str] = Counter()
        self.pii: Counter[str] = Counter()

    def add(self, ts: datetime, rec: Mapping[str, Any]) -> None:
        self.requests += 1
        self.first = ts if self.first is None else min(self.first, ts)
        self.last = ts if self.last is None else max(self.last, ts)
        route = _str(rec.get("route")) or MISSING_LABEL
        action = _str(rec.get("action")) or MISSING_LABEL
        router = _str(rec.get("router"))
        intent = _str(rec.get("intent"))
        outcome = _str(rec.get("cache")) or MISSING_LABEL
        cost = _num(rec.get("cost_usd")) or 0.0
        saved = _num(rec.get("saved_usd")) or 0.0
        self.by_route[route] += 1
        self.by_action[action] += 1
        self.cache[_str(rec.get("endpoint")) or MISSING_LABEL][outcome] += 1
        self.cost += cost
        if saved:
            self.saved += saved
            source = (
                "cache" if outcome in HIT_OUTCOMES
                else "router" if action in ROUTER_ANSWERS
                else "other"
            )  # fmt: skip
            self.saved_by[source] = self.saved_by.get(source, 0.0) + saved
        if intent is not None:
            key = intent_key(router, intent)
            self.by_intent[key] += 1
            _add_cost(self.intent_cost[key], cost)
            if action == "HANDOFF":
                self.handoffs[key] += 1
        if router is not None:
            self.routers[router]["requests"] += 1
            self.routers[router][action] += 1
        _add_cost(self.team_cost[_str(rec.get("team")) or NONE_LABEL], cost)
        _add_cost(self.group_cost[_str(rec.get("model_group")) or NONE_LABEL], cost)
        latency = rec.get("latency_ms")
        total = _num(latency.get("total")) if isinstance(latency, Mapping) else None
        if total is not None:
            self.latency[route].append(total)
        status = _num(rec.get("status"))
        error = rec.get("error")
        if (status is not None and status >= 400) or error is not None:
            self.errors += 1
            if status is not None and status >= 400:
                self.errors_by_status[int(status)] += 1
            if error is not None:
                kind = _str(error.get("type")) if isinstance(error, Mapping) else None
                self.errors_by_type[kind or MISSING_LABEL] += 1
        fallbacks = int(_num(rec.get("fallbacks")) or 0)
        if fallbacks > 0:
            self.fallback_requests += 1
            self.fallbacks += fallbacks
        retries = int(_num(rec.get("retries")) or 0)
        if retries > 0:
            self.retried_requests += 1
            self.retries += retries
        self._add_extras(rec)

    def _add_extras(self, rec: Mapping[str, Any]) -> None:
        cache = rec.get("prompt_cache")
        if isinstance(cache, Mapping):
            row = self.prompt_cache[_str(rec.get("model_group")) or NONE_LABEL]
            row[0] += 1
            row[1] += int(_num(cache.get("read_tokens")) or 0)
            row[2] += int(_num(cache.get("write_tokens")) or 0)
            row[3] += _num(cache.get("saved_usd")) or 0.0
            row[4] += _num(cache.get("storage_usd")) or 0.0
        degraded = _str(rec.get("degraded"))
        if degraded:
            self.degraded[degraded.split(" (budget")[0]] += 1
        pii = rec.get("pii")
        if isinstance(pii, Mapping):
            for kind in pii.get("kinds") or []:
                self.pii[f"{pii.get('action')}:{kind}"] += 1

    def report(self, window: Window, scan: Scan) -> Report:
        chat = self.cache.get("chat", Counter())
        lookups = sum(chat[o] for o in LOOKUP_OUTCOMES)
        hits = sum(chat[o] for o in HIT_OUTCOMES)
        rows = [_router_row(name, c) for name, c in sorted(self.routers.items())]
        router_requests = sum(r.requests for r in rows)
        refusals = sum(r.refusals for r in rows)
        clarifications = sum(r.clarifications for r in rows)
        latency = [_latency_row(route, v) for route, v in sorted(self.latency.items())]
        every = [x for v in self.latency.values() for x in v]
        return Report(
            window_start=_iso(window.start),
            window_end=_iso(window.end),
            scan=scan,
            requests=self.requests,
            first_request=_iso(self.first),
            last_request=_iso(self.last),
            total_cost_usd=_money(self.cost),
            by_route=_sorted_counts(self.by_route),
            by_intent=_sorted_counts(self.by_intent),
            by_action=_sorted_counts(self.by_action),
            cache=CacheSummary(
                outcomes={e: _sorted_counts(c) for e, c in sorted(self.cache.items())},
                chat_lookups=lookups,
                chat_hits=hits,
                chat_hit_rate=_rate(hits, lookups),
                chat_shadow_hits=chat["SHADOW_HIT"],
                chat_bypass=chat["BYPASS"],
                chat_none=chat["NONE"],
            ),
            savings=Savings(
                total_usd=_money(self.saved),
                by_source={k: _money(v) for k, v in self.saved_by.items()},
            ),
            router=RouterSummary(
                requests=router_requests,
                refusals=refusals,
                refusal_rate=_rate(refusals, router_requests),
                clarifications=clarifications,
                clarification_rate=_rate(clarifications, router_requests),
                handoffs=sum(self.handoffs.values()),
                handoffs_by_intent=_sorted_counts(self.handoffs),
                by_router=rows,
            ),
            intents_by_cost=_cost_rows(self.intent_cost),
            spend_by_team=_cost_rows(self.team_cost),
            spend_by_model_group=_cost_rows(self.group_cost),
            latency_by_route=latency,
            latency_overall=_latency_row("(all)", every) if every else None,
            errors=Errors(
                requests=self.errors,
                rate=_rate(self.errors, self.requests),
                by_status={str(s): n for s, n in sorted(self.errors_by_status.items())},
                by_type=_sorted_counts(self.errors_by_type),
            ),
            fallbacks=Fallbacks(
                requests=self.fallback_requests,
                total=self.fallbacks,
                retried_requests=self.retried_requests,
                retries=self.retries,
            ),
            prompt_cache=[
                PromptCacheRow(g, int(v[0]), int(v[1]), int(v[2]), _money(v[3]), _money(v[4]))
                for g, v in sorted(self.prompt_cache.items())
            ],
            degraded=_sorted_counts(self.degraded),
            pii=_sorted_counts(self.pii),
        )


def _add_cost(slot: list[float], cost: float) -> None:
    slot[0] += 1
    slot[1] += cost


def _cost_rows(costs: Mapping[str, list[float]]) -> list[CostRow]:
    rows = [
        CostRow(name, int(n), _money(total), _money(total / n))
        for name, (n, total) in costs.items()
    ]
    return sorted(rows, key=lambda r: (-r.cost_usd, -r.requests, r.name))


def _router_row(name: str, counts: Counter[str]) -> RouterRow:
    n = counts["requests"]
    return RouterRow(
        router=name,
        requests=n,
        refusals=counts["REFUSE"],
        refusal_rate=_rate(counts["REFUSE"], n),
        clarifications=counts["CLARIFY"],
        clarification_rate=_rate(counts["CLARIFY"], n),
        handoffs=counts["HANDOFF"],
    )


def _latency_row(route: str, values: Sequence[float]) -> LatencyRow:
    return LatencyRow(
        route, len(values), percentile(values, 50), percentile(values, 95), max(values)
    )


def summarize(
    lines: Iterable[str | bytes], window: Window | None = None, scan: Scan | None = None
) -> Report:
    """The report of request-log lines (``scan`` collects what was read and skipped)."""
    window = window if window is not None else Window()
    scan = scan if scan is not None else Scan()
    tally = _Tally()
    for line in lines:
        if not line.strip():
            continue
        scan.lines += 1
        parsed = parse_record(line)
        if parsed is None:
            scan.malformed_lines += 1
            continue
        ts, record = parsed
        if record.get("event") != "request":
            scan.other_events += 1
        elif not window.contains(ts):
            scan.outside_window += 1
        else:
            tally.add(ts, record)
    return tally.report(window, scan)


def _lines(files: Sequence[Path]) -> Iterable[bytes]:
    for path in files:
        try:
            with path.open("rb") as handle:
                yield from handle
        except OSError as exc:
            raise ReportError(f"{path}: cannot read: {exc.strerror or exc}") from None


def build_report(paths: Sequence[str | Path], window: Window | None = None) -> Report:
    """Read the request logs at ``paths`` (files, folders, globs) and summarize ``window``."""
    files = log_files(paths)
    return summarize(_lines(files), window, Scan(files=[str(f) for f in files]))


# --- Markdown ----------------------------------------------------------------


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|")


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return out


def _pct(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate * 100:.1f}%"


def _usd(value: float) -> str:
    return f"${value:,.6f}"


def _ms(value: float) -> str:
    return f"{value:,.1f}"


def _share_rows(counts: Mapping[str, int], total: int) -> list[list[object]]:
    return [[name, n, _pct(_rate(n, total))] for name, n in counts.items()]


def render_markdown(report: Report, top: int = 10) -> str:
    """The report as Markdown: a summary and one table per section."""
    r, s = report, report.scan
    window = f"{r.window_start or 'the beginning'} to {r.window_end or 'now'} (UTC)"
    out = [
        "# Gateway analytics",
        "",
        f"- window: {window}",
        f"- requests: {r.requests}"
        + (f" (first {r.first_request}, last {r.last_request})" if r.requests else ""),
        f"- read: {len(s.files)} file(s), {s.lines} line(s); skipped {s.malformed_lines} "
        f"malformed, {s.outside_window} outside the window, {s.other_events} other events",
        f"- spend: {_usd(r.total_cost_usd)}; saved: {_usd(r.savings.total_usd)}",
        f"- errors: {r.errors.requests} ({_pct(r.errors.rate)}); requests with fallbacks: "
        f"{r.fallbacks.requests}",
    ]
    n = r.requests
    out += ["", "## Traffic", "", "### By action", ""]
    out += _table(["action", "requests", "share"], _share_rows(r.by_action, n))
    out += ["", "### By route", ""]
    out += _table(["route", "requests", "share"], _share_rows(r.by_route, n))
    out += ["", "### By intent", ""]
    out += _table(["router/intent", "requests", "share"], _share_rows(r.by_intent, n))

    c = r.cache
    out += ["", "## Cache", ""]
    out += [
        f"Chat hit rate: **{_pct(c.chat_hit_rate)}** ({c.chat_hits} hits of "
        f"{c.chat_lookups} lookups; shadow hits {c.chat_shadow_hits}; not looked up: "
        f"BYPASS {c.chat_bypass}, NONE {c.chat_none}).",
        "",
    ]
    out += _table(
        ["endpoint", "outcome", "requests"],
        ([e, o, k] for e, counts in c.outcomes.items() for o, k in counts.items()),
    )
    out += ["", "## Savings", ""]
    out += _table(
        ["source", "saved"],
        [*([k, _usd(v)] for k, v in r.savings.by_source.items()),
         ["**total**", _usd(r.savings.total_usd)]],
    )  # fmt: skip

    rt = r.router
    out += ["", "## Router outcomes", ""]
    out += [
        f"{rt.requests} router requests: refusal rate **{_pct(rt.refusal_rate)}** "
        f"({rt.refusals}), clarification rate **{_pct(rt.clarification_rate)}** "
        f"({rt.clarifications}), handoffs {rt.handoffs}.",
        "",
    ]
    out += _table(
        ["router", "requests", "refusals", "refusal rate", "clarifications",
         "clarification rate", "handoffs"],
        ([x.router, x.requests, x.refusals, _pct(x.refusal_rate), x.clarifications,
          _pct(x.clarification_rate), x.handoffs] for x in rt.by_router),
    )  # fmt: skip
    if rt.handoffs_by_intent:
        out += ["", "### Handoffs by intent", ""]
        out += _table(["router/intent", "handoffs"], rt.handoffs_by_intent.items())

    out += ["", f"## Top intents by cost (top {top})", ""]
    out += _cost_table("router/intent", r.intents_by_cost, top)
    out += ["", "## Spend by team", ""]
    out += _cost_table("team", r.spend_by_team, None)
    out += ["", "## Spend by model group", ""]
    out += _cost_table("model group", r.spend_by_model_group, None)

    out += ["", "## Latency (total, ms; nearest-rank percentiles)", ""]
    rows = [*r.latency_by_route, *([r.latency_overall] if r.latency_overall else [])]
    out += _table(
        ["route", "samples", "p50", "p95", "max"],
        ([x.route, x.samples, _ms(x.p50_ms), _ms(x.p95_ms), _ms(x.max_ms)] for x in rows),
    )

    e, f = r.errors, r.fallbacks
    out += ["", "## Errors", "", f"{e.requests} error requests ({_pct(e.rate)}).", ""]
    out += _table(["status", "requests"], e.by_status.items())
    out += [""]
    out += _table(["error type", "requests"], e.by_type.items())
    out += [
        "",
        "## Fallbacks and retries",
        "",
        f"- requests with fallbacks: {f.requests} ({f.total} fallbacks in all)",
        f"- requests with retries: {f.retried_requests} ({f.retries} retries in all)",
    ]
    out += ["", "## Provider prompt caching", ""]
    out += _table(
        ["model group", "requests", "cached tokens read", "written", "saved", "storage fees"],
        ([x.model_group, x.requests, x.read_tokens, x.write_tokens, _usd(x.saved_usd),
          _usd(x.storage_usd)] for x in r.prompt_cache),
    )  # fmt: skip
    out += ["", "## Degraded answers (budget ladder)", ""]
    out += _table(["rung", "answers"], r.degraded.items())
    out += ["", "## Sensitive data found (PII guardrail)", ""]
    out += _table(["action:kind", "requests"], r.pii.items())
    return "\n".join(out) + "\n"


def _cost_table(label: str, rows: Sequence[CostRow], top: int | None) -> list[str]:
    shown = rows if top is None else rows[:top]
    out = _table(
        [label, "requests", "cost", "avg cost"],
        ([x.name, x.requests, _usd(x.cost_usd), _usd(x.avg_cost_usd)] for x in shown),
    )
    if len(rows) > len(shown):
        out += ["", f"({len(rows) - len(shown)} more in analytics.json)"]
    return out


# --- command -----------------------------------------------------------------


def report_command(args: argparse.Namespace) -> int:
    """``gateway report``: print the Markdown, write analytics.md and analytics.json."""
    try:
        if args.top < 1:
            raise ReportError(f"--top {args.top}: must be 1 or more")
        window = window_from(args.since, args.start, args.end, now=datetime.now(UTC))
        report = build_report(args.logs, window)
    except ReportError as exc:
        print(f"gateway report: {exc}", file=sys.stderr)
        return 2
    markdown = render_markdown(report, top=args.top)
    print(markdown, end="")
    out: Path = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "analytics.md").write_text(markdown, encoding="utf-8")
        (out / "analytics.json").write_text(report.to_json(), encoding="utf-8")
    except OSError as exc:
        print(f"gateway report: cannot write to {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"wrote {out / 'analytics.md'} and {out / 'analytics.json'}", file=sys.stderr)
    return 0
