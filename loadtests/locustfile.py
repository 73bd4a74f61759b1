"""Locust scenarios for the gateway: a support-bot traffic mix over plain HTTP.

Every request is ``POST /v1/chat/completions`` with an OpenAI JSON body and
``Authorization: Bearer <key>``, against the router (``support-bot``) and a plain
model group (``gpt-sim``). Run it with locust's own flags (``--host``, ``-u``,
``-r``, ``-t``, ``--headless``, ``--csv``, ``--html``), or start a whole local
stack with ``python -m loadtests.run_locust`` (see loadtests/README.md).

Environment variables:

  GATEWAY_KEYS        comma-separated gateway keys; simulated users take them round
                      robin (each user keeps one key). Default: GATEWAY_KEY.
  GATEWAY_KEY         one key. Default: LITELLM_MASTER_KEY, else sk-gateway-demo
                      (the key of ``make run``).
  GATEWAY_ROUTER      the router to call (default support-bot).
  GATEWAY_MODEL       the plain model group to call (default gpt-sim).
  GATEWAY_EXPECT_429  1 (default): a 429 with Retry-After (a key or team over its
                      rpm/tpm/budget) counts as a success, named "... [429]";
                      0: every 429 is a failure.
  GATEWAY_REQUIRE_HEADERS  1 (default): a 200 answer without x-gateway-cache and
                      x-gateway-action is a failure; 0: it is named "... [no header]".
  LOADTEST_WAIT       "MIN,MAX" seconds each user waits between requests
                      (default 0.2,1.0).
  LOADTEST_SEED       seed of the query generator (default: random).
  LOADTEST_SUMMARY    where to write the JSON outcome summary (default:
                      <--csv prefix>_outcomes.json when --csv is given).

Request names say what happened: ``"<model> <scenario> [<outcome>]"``, where the
outcome is the router's own action (RESPOND, HANDOFF, CLARIFY, REFUSE) when it
answered itself, else the ``x-gateway-cache`` value (HIT_EXACT, HIT_SEMANTIC,
MISS, BYPASS, SHADOW_HIT), or 429. So locust's CSV and HTML reports give the
latency of cache hits, misses and router answers separately. Expected refusals
and clarifying questions are successes (HTTP 200 with ``x-gateway-action``);
any other status, a missing ``x-gateway-*`` header, a malformed body or an
incomplete stream is a failure.

At test stop a summary of outcomes is printed and written as JSON: counts per
``x-gateway-cache`` and ``x-gateway-action``, per scenario (with how many got the
expected outcome), completed streams, 429s and the percentiles of
``x-gateway-overhead-ms`` (the gateway's own time before it answered or forwarded).

Scenarios (task weights in parentheses):

  in-scope (30)       a new support query for one intent of support-bot, with
                      varying details (pages, devices, error codes) so most miss
                      the cache
  plain (14)          a new general question to gpt-sim
  paraphrase (12)     a paraphrase of an earlier cached query of the same key
                      (expects HIT_SEMANTIC)
  repeat (10)         an earlier cached query of the same key, byte for byte
                      (expects HIT_EXACT)
  stream (12)         stream=True: a new router or plain query, or a repeat; the
                      whole SSE stream is read up to [DONE]
  out-of-scope (8)    off-topic (expects REFUSE)
  ambiguous (5)       "freeze" and the like (expects CLARIFY); half of the time the
                      user answers the question ("clarify-answer": RESPOND/ROUTE)
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from locust import between, events, task
from locust import stats as locust_stats
from locust.contrib.fasthttp import FastHttpUser
from locust.runners import WorkerRunner

from extensions.observe.report import percentile

CHAT_PATH = "/v1/chat/completions"
ROUTER_ACTIONS = frozenset({"RESPOND", "HANDOFF", "CLARIFY", "REFUSE"})
HISTORY_PER_KEY = 500
PCTS = (50, 95, 99)

Messages = list[dict[str, str]]


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def gateway_keys() -> list[str]:
    keys = [k.strip() for k in _env("GATEWAY_KEYS", "").split(",") if k.strip()]
    if keys:
        return keys
    return [_env("GATEWAY_KEY", _env("LITELLM_MASTER_KEY", "sk-gateway-demo"))]


def wait_bounds() -> tuple[float, float]:
    low, _, high = _env("LOADTEST_WAIT", "0.2,1.0").partition(",")
    return float(low), float(high or low)


# -- what users ask -------------------------------------------------------------------
#
# Each cacheable template is a pair: the query and a paraphrase that differs only in a
# word or two, so that the two embed above the semantic threshold (0.95) and agree on
# numbers, names and negation (the cache's verification). Slots are filled alike in both.

SLOTS: dict[str, list[str]] = {
    "page": ["settings", "billing", "profile", "dashboard", "reports", "export", "search",
             "notifications", "calendar", "invoices", "team members", "integrations"],
    "device": ["iPhone", "iPad", "Android phone", "Pixel", "Galaxy tablet", "Windows laptop",
               "MacBook", "Chromebook", "Linux desktop", "Surface"],
    "code": [str(n) for n in range(400, 600)],
    "data": ["contacts", "invoices", "reports", "projects", "files", "notes", "messages"],
    "country": ["Canada", "Germany", "France", "Spain", "Italy", "Japan", "Brazil", "India",
                "Mexico", "Australia", "Ireland", "Poland"],
    "version": [f"{a}.{b}" for a in range(3, 7) for b in range(10)],
    "month": ["January", "February", "March", "April", "May", "June", "July", "August",
              "September", "October", "November", "December"],
    "plan": ["basic", "pro", "family", "business", "student"],
    "city": ["Paris", "Rome", "Berlin", "Madrid", "Lisbon", "Oslo", "Vienna", "Prague",
             "Dublin", "Tokyo", "Chicago", "Toronto"],
    "animal": ["dogs", "cats", "penguins", "elephants", "giraffes", "owls", "sharks"],
    "dish": ["pancakes", "lasagna", "banana bread", "paella", "ramen", "brownies", "risotto"],
    "sport": ["football", "basketball", "hockey", "baseball", "tennis", "cricket"],
    "landmark": ["mount everest", "the eiffel tower", "the empire state building",
                 "big ben", "the statue of liberty"],
    "word": ["hello", "thank you", "good night", "see you later", "how are you"],
    "language": ["spanish", "german", "italian", "french", "japanese", "portuguese"],
    "genre": ["mystery", "science fiction", "fantasy", "history", "biography"],
    "task": ["reset my wifi router to factory settings", "clear the cache of my web browser",
             "rotate my SSH keys safely", "set up a Python virtual environment",
             "free up disk space on my laptop", "back up my photos to an external drive",
             "speed up a slow SQL query", "configure a firewall on Ubuntu",
             "create a pivot table in a spreadsheet", "write a good commit message",
             "choose a strong password", "set up two factor authentication",
             "migrate a database to a new server", "profile memory usage in Python",
             "debug a memory leak in Java", "compress a folder on Windows"],
    "os": ["Windows", "macOS", "Ubuntu", "Fedora", "Debian", "ChromeOS", "FreeBSD"],
    "audience": ["beginner", "student", "manager", "new developer", "designer", "child",
                 "sysadmin", "data analyst"],
    "topic": ["a load balancer", "DNS resolution", "a reverse proxy", "TLS certificates",
              "garbage collection", "a hash table", "public key cryptography", "HTTP caching",
              "a message queue", "database indexing", "container orchestration",
              "consistent hashing", "rate limiting", "a content delivery network"],
}  # fmt: skip


@dataclass(frozen=True)
class Template:
    text: str
    paraphrase: str | None = None  # None: not cacheable (router answers, never-cached intents)


@dataclass(frozen=True)
class Intent:
    name: str
    action: str
    weight: int
    templates: tuple[Template, ...]


T = Template
INTENTS: tuple[Intent, ...] = (
    Intent(
        "technical_issue",
        "ROUTE",
        8,
        (
            T(
                "The Acme app crashes every time I open the {page} page on my {device}",
                "The Acme app crashes whenever I open the {page} page on my {device}",
            ),
            T(
                "I get error {code} every time I open the {page} page in the Acme app",
                "I get error {code} whenever I open the {page} page in the Acme app",
            ),
            T(
                "Since updating to version {version} the Acme app keeps freezing on my {device}",
                "Since updating to version {version}, the Acme app keeps freezing on my {device}",
            ),
            T(
                "The {page} page of the Acme website won't load on my {device}",
                "The {page} page of the Acme website will not load on my {device}",
            ),
            T(
                "Push notifications of the Acme app stopped working on my {device}",
                "Push notifications of the Acme app have stopped working on my {device}",
            ),
        ),
    ),
    Intent(
        "default",
        "ROUTE",
        5,
        (
            T(
                "How do I change the email on my Acme account in app {version} on my {device}?",
                "How can I change the email on my Acme account in app {version} on my {device}?",
            ),
            T(
                "Where can I download my {data} from {month} from my Acme account?",
                "Where can I download all my {data} from {month} from my Acme account?",
            ),
            T(
                "How do I contact Acme support by phone from {country} in {language}?",
                "How can I contact Acme support by phone from {country} in {language}?",
            ),
            T(
                "Is there a dark mode in version {version} of the Acme app for {device}?",
                "Is there a dark mode in version {version} of the Acme app for the {device}?",
            ),
        ),
    ),
    Intent(
        "reset_password",
        "RESPOND",
        3,
        (
            T("I forgot my password and can't log in on my {device}"),
            T("how do I reset my password in the Acme app on my {device}"),
            T("please send me a password reset link, I'm locked out since {month}"),
        ),
    ),
    Intent(
        "billing_error",
        "HANDOFF",
        2,
        (
            T("I was charged twice for my {plan} plan in {month}"),
            T("there's a wrong charge on my {month} invoice"),
            T("you billed me for the {plan} plan after I cancelled"),
        ),
    ),
    Intent(
        "subscription",
        "ROUTE",
        2,
        (
            T("how do I switch my {plan} plan from monthly to yearly billing"),
            T("I want to upgrade from the {plan} plan to premium"),
            T("how do I cancel my {plan} subscription"),
        ),
    ),
    Intent(
        "freeze_account",
        "RESPOND",
        1,
        (
            T("please freeze my account, my {device} was stolen"),
            T("I need to freeze my account because of fraud on my {device}"),
        ),
    ),
)

PLAIN: tuple[Template, ...] = (
    T("How do I {task} on {os}?", "How can I {task} on {os}?"),
    T(
        "Explain how {topic} works to a {audience} in a few sentences.",
        "Explain how {topic} works to a {audience} in a couple of sentences.",
    ),
    T(
        "What are the best practices to {task} on {os}?",
        "What are good practices to {task} on {os}?",
    ),
)

OUT_OF_SCOPE: tuple[str, ...] = (
    "what's the weather like tomorrow in {city}",
    "tell me a joke about {animal}",
    "give me a recipe for {dish}",
    "who won the {sport} game last night",
    "how tall is {landmark}",
    "translate {word} into {language}",
    "recommend a good {genre} book",
)

AMBIGUOUS: tuple[str, ...] = ("freeze", "freezing", "frozen", "freeze please", "it's frozen",
                              "froze")  # fmt: skip
# answers to the clarifying question -> the intent they resolve to
CLARIFY_ANSWERS: tuple[tuple[str, str], ...] = (
    ("my account", "freeze_account"),
    ("freeze my account please", "freeze_account"),
    ("the app, it keeps hanging", "technical_issue"),
)


def fill(text: str, rng: random.Random, values: dict[str, str] | None = None) -> str:
    """``text`` with every ``{slot}`` filled (the same value for a slot in ``values``)."""
    chosen = values if values is not None else {}
    for name, options in SLOTS.items():
        if "{" + name + "}" in text and name not in chosen:
            chosen[name] = rng.choice(options)
    return text.format_map(chosen)


@dataclass(frozen=True)
class Query:
    """One question: its text, and a paraphrase of it when it is cacheable."""

    text: str
    paraphrase: str | None
    intent: str | None = None  # the router intent it is written for
    action: str | None = None  # the action expected from the router


def make_query(template: Template, rng: random.Random, intent: Intent | None = None) -> Query:
    values: dict[str, str] = {}
    text = fill(template.text, rng, values)
    para = fill(template.paraphrase, rng, values) if template.paraphrase else None
    return Query(text, para, intent.name if intent else None, intent.action if intent else None)


def user_message(text: str) -> Messages:
    return [{"role": "user", "content": text}]


# -- outcome counts ---------------------------------------------------------------------


@dataclass
class Outcomes:
    """What the gateway's headers said, per scenario; merged from workers when distributed."""

    cache: Counter[str] = field(default_factory=Counter)
    action: Counter[str] = field(default_factory=Counter)
    status: Counter[str] = field(default_factory=Counter)
    scenario: Counter[str] = field(default_factory=Counter)  # "scenario|outcome"
    expected: Counter[str] = field(default_factory=Counter)  # "scenario|yes" / "scenario|no"
    streams: Counter[str] = field(default_factory=Counter)  # completed, incomplete, chunks
    overhead_ms: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    COUNTERS = ("cache", "action", "status", "scenario", "expected", "streams")

    def record(self, scenario: str, status: int, headers: Any, outcome: str,
               expected: bool | None) -> None:  # fmt: skip
        with self.lock:
            self.status[str(status)] += 1
            self.scenario[f"{scenario}|{outcome}"] += 1
            if expected is not None:
                self.expected[f"{scenario}|{'yes' if expected else 'no'}"] += 1
            if status != 200:
                return
            cache = headers.get("x-gateway-cache")
            if cache:
                self.cache[cache] += 1
            action = headers.get("x-gateway-action")
            if action:
                self.action[action] += 1
            lane = headers.get("x-gateway-overhead-ms")
            if lane:
                with contextlib.suppress(ValueError):
                    self.overhead_ms.append(float(lane))

    def stream(self, completed: bool, chunks: int) -> None:
        with self.lock:
            self.streams["completed" if completed else "incomplete"] += 1
            self.streams["chunks"] += chunks

    def drain(self) -> dict[str, Any]:
        """The counts so far as plain data, then start again (a worker's report)."""
        with self.lock:
            data: dict[str, Any] = {name: dict(getattr(self, name)) for name in self.COUNTERS}
            data["overhead_ms"] = self.overhead_ms
            for name in self.COUNTERS:
                getattr(self, name).clear()
            self.overhead_ms = []
        return data

    def merge(self, data: dict[str, Any] | None) -> None:
        if not data:
            return
        with self.lock:
            for name in self.COUNTERS:
                getattr(self, name).update(data.get(name) or {})
            self.overhead_ms.extend(data.get("overhead_ms") or [])

    def total(self) -> int:
        return sum(self.status.values())

    def summary(self) -> dict[str, Any]:
        with self.lock:
            scenarios: dict[str, dict[str, Any]] = {}
            for key, n in sorted(self.scenario.items()):
                name, _, outcome = key.partition("|")
                entry = scenarios.setdefault(name, {"requests": 0, "outcomes": {}})
                entry["requests"] += n
                entry["outcomes"][outcome] = n
            for name, entry in scenarios.items():
                yes, no = self.expected[f"{name}|yes"], self.expected[f"{name}|no"]
                if yes + no:  # requests whose outcome was checked against an expectation
                    entry["checked"] = yes + no
                    entry["as_expected"] = yes
                    entry["as_expected_share"] = round(yes / (yes + no), 4)
            lane = self.overhead_ms
            return {
                "requests": sum(self.status.values()),
                "status": dict(sorted(self.status.items())),
                "cache": dict(sorted(self.cache.items())),
                "action": dict(sorted(self.action.items())),
                "streams": {k: self.streams[k] for k in ("completed", "incomplete", "chunks")},
                "rate_limited": self.status["429"],
                "overhead_ms": {
                    "count": len(lane),
                    **{f"p{p}": round(percentile(lane, p), 3) if lane else None for p in PCTS},
                    "max": round(max(lane), 3) if lane else None,
                },
                "scenarios": scenarios,
            }


OUTCOMES = Outcomes()


def format_summary(s: dict[str, Any]) -> str:
    def counts(c: dict[str, int]) -> str:
        return "  ".join(f"{k}={v}" for k, v in c.items()) or "-"

    lane = s["overhead_ms"]
    lines = [
        "Gateway outcomes",
        f"  requests        {s['requests']}  (HTTP {counts(s['status'])})",
        f"  x-gateway-cache {counts(s['cache'])}",
        f"  x-gateway-action {counts(s['action'])}",
        f"  streams         completed={s['streams']['completed']} "
        f"incomplete={s['streams']['incomplete']} chunks={s['streams']['chunks']}",
        f"  rate limited    {s['rate_limited']} (429)",
        f"  overhead ms     n={lane['count']} p50={lane['p50']} p95={lane['p95']} "
        f"p99={lane['p99']} max={lane['max']}",
        "  per scenario: requests, outcomes (as expected / checked)",
    ]
    for name, entry in s["scenarios"].items():
        checked = f"  ({entry['as_expected']}/{entry['checked']})" if "checked" in entry else ""
        lines.append(f"    {name:<15} {entry['requests']:>6}  {counts(entry['outcomes'])}{checked}")
    return "\n".join(lines)


# -- the user -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Asked:
    """A request whose answer the gateway cached, to repeat or paraphrase later."""

    model: str
    messages: Messages
    paraphrase: str | None


HISTORY: dict[str, deque[Asked]] = {}  # per key: the cache scope is the key's team or the key
_KEY_TURN = itertools.count()


class Rejected(Exception):
    """The answer was wrong in a way that makes the request a failure."""


class GatewayUser(FastHttpUser):
    """A support-chat client: one key, a mix of router and plain-model requests."""

    wait_time = between(*wait_bounds())
    router = _env("GATEWAY_ROUTER", "support-bot")
    model = _env("GATEWAY_MODEL", "gpt-sim")
    expect_429 = _env("GATEWAY_EXPECT_429", "1") != "0"
    require_headers = _env("GATEWAY_REQUIRE_HEADERS", "1") != "0"

    def on_start(self) -> None:
        keys = gateway_keys()
        self.key = keys[next(_KEY_TURN) % len(keys)]
        self.headers = {"Authorization": f"Bearer {self.key}"}
        seed = os.environ.get("LOADTEST_SEED")
        self.rng = random.Random(None if seed is None else f"{seed}:{id(self)}")
        self.history = HISTORY.setdefault(self.key, deque(maxlen=HISTORY_PER_KEY))

    # -- tasks ------------------------------------------------------------------------

    @task(30)
    def in_scope(self) -> None:
        intent = self.rng.choices(INTENTS, weights=[i.weight for i in INTENTS])[0]
        query = make_query(self.rng.choice(intent.templates), self.rng, intent)
        self.chat("in-scope", self.router, user_message(query.text), query=query)

    @task(14)
    def plain(self) -> None:
        query = make_query(self.rng.choice(PLAIN), self.rng)
        self.chat("plain", self.model, user_message(query.text), query=query)

    @task(12)
    def paraphrase(self) -> None:
        earlier = [a for a in self.history if a.paraphrase]
        if not earlier:
            self.in_scope()
            return
        asked = self.rng.choice(earlier)
        messages = [*asked.messages[:-1], {"role": "user", "content": asked.paraphrase or ""}]
        self.chat("paraphrase", asked.model, messages,
                  check=lambda out: out.cache == "HIT_SEMANTIC")  # fmt: skip

    @task(10)
    def repeat(self) -> None:
        if not self.history:
            self.plain()
            return
        asked = self.rng.choice(self.history)
        self.chat("repeat", asked.model, asked.messages,
                  check=lambda out: out.cache == "HIT_EXACT")  # fmt: skip

    @task(12)
    def stream(self) -> None:
        pick = self.rng.random()
        if pick < 0.25 and self.history:
            asked = self.rng.choice(self.history)
            self.chat("stream", asked.model, asked.messages, stream=True)
        elif pick < 0.5:
            query = make_query(self.rng.choice(PLAIN), self.rng)
            self.chat("stream", self.model, user_message(query.text), query=query, stream=True)
        else:
            intent = self.rng.choices(INTENTS, weights=[i.weight for i in INTENTS])[0]
            query = make_query(self.rng.choice(intent.templates), self.rng, intent)
            self.chat("stream", self.router, user_message(query.text), query=query, stream=True)

    @task(8)
    def out_of_scope(self) -> None:
        text = fill(self.rng.choice(OUT_OF_SCOPE), self.rng)
        self.chat("out-of-scope", self.router, user_message(text),
                  check=lambda out: out.action == "REFUSE")  # fmt: skip

    @task(5)
    def ambiguous(self) -> None:
        messages = user_message(self.rng.choice(AMBIGUOUS))
        out = self.chat("ambiguous", self.router, messages,
                        check=lambda out: out.action == "CLARIFY")  # fmt: skip
        if out is None or out.action != "CLARIFY" or self.rng.random() < 0.5:
            return
        answer, intent = self.rng.choice(CLARIFY_ANSWERS)
        follow_up = [*messages, {"role": "assistant", "content": out.content},
                     *user_message(answer)]  # fmt: skip
        self.chat("clarify-answer", self.router, follow_up,
                  check=lambda out: out.intent == intent)  # fmt: skip

    # -- one request --------------------------------------------------------------------

    def chat(
        self,
        scenario: str,
        model: str,
        messages: Messages,
        query: Query | None = None,
        stream: bool = False,
        check: Callable[[Answer], bool] | None = None,
    ) -> Answer | None:
        """Send one chat request; name it by its outcome; count what the headers said."""
        body: dict[str, Any] = {"model": model, "messages": messages}
        if stream:
            body["stream"] = True
        if query is not None and query.intent is not None and model == self.router:
            expected_intent, expected_action = query.intent, query.action
            check = check or (lambda out: out.intent in {expected_intent, None}
                              and out.action == expected_action)  # fmt: skip
        started = time.perf_counter()
        label = f"{model} {scenario}"
        with self.client.post(CHAT_PATH, json=body, headers=self.headers, name=label,
                              catch_response=True, stream=stream) as resp:  # fmt: skip
            status = resp.status_code
            headers = resp.headers or {}
            if status == 429 and self.expect_429 and headers.get("retry-after"):
                resp.request_meta["name"] = f"{label} [429]"
                OUTCOMES.record(scenario, status, headers, "429", None)
                resp.success()
                return None
            if status != 200:
                detail = _error_detail(resp, stream)
                resp.request_meta["name"] = f"{label} [HTTP {status}]"
                OUTCOMES.record(scenario, status, headers, f"HTTP {status}", None)
                resp.failure(f"HTTP {status}: {detail}")
                return None
            try:
                if stream:
                    content, size = self._read_stream(resp)
                    resp.request_meta["response_time"] = (time.perf_counter() - started) * 1000
                    resp.request_meta["response_length"] = size
                else:
                    content = _content(resp.json())
                out = Answer.of(headers, content, self.require_headers)
            except (Rejected, ValueError, KeyError, TypeError, IndexError) as exc:
                resp.request_meta["name"] = f"{label} [bad answer]"
                OUTCOMES.record(scenario, status, headers, "bad answer", None)
                resp.failure(f"{type(exc).__name__}: {exc}")
                return None
            resp.request_meta["name"] = f"{label} [{out.outcome}]"
            OUTCOMES.record(scenario, status, headers, out.outcome,
                            check(out) if check else None)  # fmt: skip
            resp.success()
        if query is not None and out.cache == "MISS":  # stored once complete
            self.history.append(Asked(model, messages, query.paraphrase))
        return out

    def _read_stream(self, resp: Any) -> tuple[str, int]:
        """Read a whole SSE stream; its text and size. Rejected unless it ends in [DONE]."""
        pieces: list[str] = []
        chunks, size, done = 0, 0, False
        buffer = b""
        for raw in resp.iter_content(chunk_size=4096, decode_content=False):
            data = raw if isinstance(raw, bytes) else raw.encode()
            size += len(data)
            *complete, buffer = (buffer + data).replace(b"\r\n", b"\n").split(b"\n\n")
            for event in complete:
                for line in event.decode("utf-8").split("\n"):
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        done = True
                        continue
                    chunk = json.loads(payload)
                    if "error" in chunk:
                        OUTCOMES.stream(False, chunks)
                        raise Rejected(f"error event in stream: {chunk['error']}")
                    chunks += 1
                    for choice in chunk.get("choices") or []:
                        pieces.append((choice.get("delta") or {}).get("content") or "")
        OUTCOMES.stream(done, chunks)
        if not done:
            raise Rejected(f"stream ended without [DONE] after {chunks} chunks")
        return "".join(pieces), size


@dataclass(frozen=True)
class Answer:
    """What one 200 answer said."""

    cache: str | None
    action: str | None
    intent: str | None
    content: str

    @property
    def outcome(self) -> str:
        if self.action in ROUTER_ACTIONS:
            return str(self.action)
        return self.cache or "no header"

    @classmethod
    def of(cls, headers: Any, content: str, require_headers: bool = True) -> Answer:
        cache = headers.get("x-gateway-cache")
        action = headers.get("x-gateway-action")
        if require_headers and cache is None and action is None:
            raise Rejected("no x-gateway-cache or x-gateway-action header")
        return cls(cache, action, headers.get("x-gateway-intent"), content)


def _content(body: Any) -> str:
    message = body["choices"][0]["message"]
    content = message.get("content")
    if not isinstance(content, str):
        raise Rejected("answer without text content")
    return content


def _error_detail(resp: Any, stream: bool) -> str:
    try:
        text = b"".join(
            c if isinstance(c, bytes) else c.encode() for c in resp.iter_content(4096)
        ).decode(errors="replace") if stream else (resp.text or "")  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - only for the failure message
        text = f"(body unreadable: {type(exc).__name__})"
    return " ".join(text.split())[:300]


# -- reporting ------------------------------------------------------------------------------


def _summary_path(environment: Any) -> Path | None:
    explicit = os.environ.get("LOADTEST_SUMMARY")
    if explicit:
        return Path(explicit)
    prefix = getattr(environment.parsed_options, "csv_prefix", None)
    return Path(f"{prefix}_outcomes.json") if prefix else None


_reported = {"requests": -1}


def _report(environment: Any, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return
    if OUTCOMES.total() == _reported["requests"]:
        return  # nothing new since the last report
    _reported["requests"] = OUTCOMES.total()
    summary = OUTCOMES.summary()
    print(format_summary(summary), flush=True)
    path = _summary_path(environment)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"Gateway outcomes written to {path}", flush=True)


def _settle_csv(environment: Any, **_: Any) -> None:
    """Users are stopped: give locust's CSV writer (one pass a second) time for a last pass,
    so that locust_stats.csv ends with the final numbers, like the console and HTML reports."""
    if getattr(environment.parsed_options, "csv_prefix", None) and not isinstance(
        environment.runner, WorkerRunner
    ):
        time.sleep(locust_stats.CSV_STATS_INTERVAL_SEC + 0.2)  # gevent-patched: cooperative


def _to_master(client_id: str, data: dict[str, Any]) -> None:
    data["gateway_outcomes"] = OUTCOMES.drain()


def _from_worker(client_id: str, data: dict[str, Any]) -> None:
    OUTCOMES.merge(data.get("gateway_outcomes"))


def _register(listeners: Iterable[tuple[Any, Callable[..., None]]]) -> None:
    for hook, listener in listeners:
        hook.add_listener(listener)


_register([
    (events.test_stop, _settle_csv),
    (events.test_stop, _report),
    (events.quitting, _report),
    (events.report_to_master, _to_master),
    (events.worker_report, _from_worker),
])  # fmt: skip
