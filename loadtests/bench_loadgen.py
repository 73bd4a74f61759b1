"""Load generators for ``loadtests/benchmark.py``: wrk (default) and a Python fallback.

Both are closed-loop: a fixed number of keep-alive connections, each sending its
next request as soon as the previous answer is in, for a fixed duration. Both
report the same figures (requests, rps, latency percentiles, errors, counts of
``status + response header`` values such as ``x-gateway-cache``) and the CPU
seconds the generator itself used (``wait4`` rusage), so its cost on a small
machine can be checked.

- ``wrk`` (``apt-get install wrk``): a generated Lua script picks each request's
  body (round-robin over a list, or a template with a tag unique per request) and
  counts response headers; ``done()`` prints one JSON line.
- ``python``: ``python -m loadtests.bench_loadgen`` (aiohttp, uvloop when present)
  in its own process; same output. About 4-5x the CPU per request of wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MARK = "@@TAG@@"  # replaced by a per-request tag in template bodies
RESULT_PREFIX = "BENCH_JSON "


@dataclass(frozen=True)
class Workload:
    """What the generator sends: a POST to ``path`` with one of ``bodies`` or ``template``."""

    path: str
    headers: dict[str, str]
    bodies: tuple[str, ...] = ()  # sent round-robin
    template: str | None = None  # JSON text containing MARK: each request gets a unique tag
    count_headers: tuple[str, ...] = ("x-gateway-cache",)

    def __post_init__(self) -> None:
        if bool(self.bodies) == (self.template is not None):
            raise ValueError("give either bodies or a template")
        if self.template is not None and MARK not in self.template:
            raise ValueError(f"template lacks {MARK}")


@dataclass
class LoadResult:
    generator: str
    connections: int
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    errors: int  # socket errors, timeouts and non-2xx answers
    counts: dict[str, int] = field(default_factory=dict)  # "200 HIT_EXACT" -> n
    generator_cpu_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def share(self, word: str) -> float:
        """Share of the counted answers whose status+headers line contains ``word``."""
        total = sum(self.counts.values())
        hits = sum(n for k, n in self.counts.items() if word in k.split())
        return hits / total if total else 0.0


# ------------------------------------------------------------------------------------- wrk

_LUA = r"""
local path = [==[%(path)s]==]
local headers = %(headers)s
local bodies = %(bodies)s
local prefix = %(prefix)s
local suffix = %(suffix)s
local run_id = [==[%(run_id)s]==]
local count_headers = %(count_headers)s
local threads = {}
local next_tid = 0
tid = 0
counter = 0
counts = {}

function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
  table.insert(threads, thread)
end

function request()
  counter = counter + 1
  local body
  if prefix then
    body = prefix .. run_id .. "-" .. tid .. "-" .. counter .. suffix
  else
    body = bodies[(counter - 1) %% #bodies + 1]
  end
  return wrk.format("POST", path, headers, body)
end

local function header(hdrs, name)
  local v = hdrs[name]
  if v then return v end
  for k, value in pairs(hdrs) do
    if string.lower(k) == name then return value end
  end
  return "-"
end

function response(status, hdrs, body)
  local key = tostring(status)
  for _, name in ipairs(count_headers) do
    key = key .. " " .. header(hdrs, name)
  end
  counts[key] = (counts[key] or 0) + 1
end

function done(summary, latency, requests)
  local agg = {}
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    if c then
      for k, v in pairs(c) do agg[k] = (agg[k] or 0) + v end
    end
  end
  local parts = {}
  for k, v in pairs(agg) do
    table.insert(parts, string.format("%%q:%%d", k, v))
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH_JSON {\"requests\":%%d,\"duration_us\":%%d,\"p50_us\":%%d,\"p90_us\":%%d," ..
    "\"p99_us\":%%d,\"mean_us\":%%f,\"max_us\":%%d,\"socket_errors\":%%d," ..
    "\"status_errors\":%%d,\"counts\":{%%s}}\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max,
    e.connect + e.read + e.write + e.timeout, e.status, table.concat(parts, ",")))
end
"""


def _lua_str(text: str) -> str:
    if "]==]" in text:
        raise ValueError("text contains ]==]")
    return f"[==[{text}]==]"


def wrk_script(workload: Workload, run_id: str) -> str:
    headers = (
        "{"
        + ", ".join(f"[ {_lua_str(k)} ] = {_lua_str(v)}" for k, v in workload.headers.items())
        + "}"
    )
    bodies = "{" + ", ".join(_lua_str(b) for b in workload.bodies) + "}"
    prefix = suffix = "nil"
    if workload.template is not None:
        before, after = workload.template.split(MARK, 1)
        prefix, suffix = _lua_str(before), _lua_str(after)
    count = "{" + ", ".join(_lua_str(h.lower()) for h in workload.count_headers) + "}"
    return _LUA % {
        "path": workload.path,
        "headers": headers,
        "bodies": bodies,
        "prefix": prefix,
        "suffix": suffix,
        "run_id": run_id,
        "count_headers": count,
    }


def _run_measured(cmd: list[str], timeout_s: float) -> tuple[str, float]:
    """Run ``cmd``; its output and the CPU seconds it used (from its rusage)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    timer = threading.Timer(timeout_s, proc.kill)
    timer.start()
    try:
        out = proc.stdout.read()
    finally:
        timer.cancel()
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited with {proc.returncode}: {out.decode()[-2000:]}")
    return out.decode(errors="replace"), usage.ru_utime + usage.ru_stime


def _parse(generator: str, connections: int, output: str, cpu_s: float) -> LoadResult:
    line = next((ln for ln in output.splitlines() if ln.startswith(RESULT_PREFIX)), None)
    if line is None:
        raise RuntimeError(f"{generator} printed no result: {output[-2000:]}")
    d = json.loads(line[len(RESULT_PREFIX) :])
    duration_s = d["duration_us"] / 1e6
    requests = int(d["requests"])
    return LoadResult(
        generator=generator,
        connections=connections,
        requests=requests,
        duration_s=round(duration_s, 3),
        rps=round(requests / duration_s, 1) if duration_s else 0.0,
        p50_ms=round(d["p50_us"] / 1000, 2),
        p90_ms=round(d["p90_us"] / 1000, 2),
        p99_ms=round(d["p99_us"] / 1000, 2),
        mean_ms=round(d["mean_us"] / 1000, 2),
        max_ms=round(d["max_us"] / 1000, 2),
        errors=int(d["socket_errors"]) + int(d["status_errors"]),
        counts={str(k): int(v) for k, v in d["counts"].items()},
        generator_cpu_s=round(cpu_s, 3),
    )


def run_wrk(
    base_url: str, workload: Workload, connections: int, duration_s: float, threads: int = 1
) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / "load.lua"
        script.write_text(wrk_script(workload, uuid.uuid4().hex[:8]))
        cmd = [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration_s))}s",
            "--timeout",
            "30s",
            "-s",
            str(script),
            base_url.rstrip("/") + workload.path,
        ]
        out, cpu = _run_measured(cmd, duration_s + 60)
    return _parse("wrk", connections, out, cpu)


# ---------------------------------------------------------------------------------- python


def run_python(
    base_url: str, workload: Workload, connections: int, duration_s: float, threads: int = 1
) -> LoadResult:
    del threads  # one process, one event loop
    with tempfile.TemporaryDirectory(prefix="bench-py-") as tmp:
        spec = Path(tmp) / "workload.json"
        spec.write_text(json.dumps(asdict(workload)))
        cmd = [
            sys.executable,
            "-m",
            "loadtests.bench_loadgen",
            "--url",
            base_url,
            "--workload",
            str(spec),
            "--connections",
            str(connections),
            "--duration",
            str(duration_s),
        ]
        out, cpu = _run_measured(cmd, duration_s + 60)
    return _parse("python", connections, out, cpu)


def run_load(
    generator: str, base_url: str, workload: Workload, connections: int, duration_s: float
) -> LoadResult:
    if generator == "wrk":
        return run_wrk(base_url, workload, connections, duration_s)
    return run_python(base_url, workload, connections, duration_s)


def default_generator() -> str:
    return "wrk" if shutil.which("wrk") else "python"


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    idx = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[idx]


async def _python_load(
    url: str, workload: Workload, connections: int, duration_s: float
) -> dict[str, Any]:
    import aiohttp

    run_id = uuid.uuid4().hex[:8]
    latencies: list[float] = []
    counts: dict[str, int] = {}
    errors = {"socket": 0, "status": 0}
    state = {"n": 0}
    target = url.rstrip("/") + workload.path
    headers = {"Content-Type": "application/json", **workload.headers}
    names = [h.lower() for h in workload.count_headers]

    def next_body() -> bytes:
        state["n"] += 1
        if workload.template is not None:
            return workload.template.replace(MARK, f"{run_id}-0-{state['n']}").encode()
        return workload.bodies[(state["n"] - 1) % len(workload.bodies)].encode()

    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=30)
    started = time.perf_counter()
    deadline = started + duration_s
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                try:
                    async with session.post(target, data=next_body(), headers=headers) as r:
                        await r.read()
                        key = " ".join([str(r.status), *(r.headers.get(n, "-") for n in names)])
                        if r.status >= 400:
                            errors["status"] += 1
                except (TimeoutError, aiohttp.ClientError):
                    errors["socket"] += 1
                    continue
                latencies.append(time.perf_counter() - t)
                counts[key] = counts.get(key, 0) + 1

        await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    us = [x * 1e6 for x in latencies]
    return {
        "requests": len(us),
        "duration_us": int(elapsed * 1e6),
        "p50_us": _percentile(us, 50),
        "p90_us": _percentile(us, 90),
        "p99_us": _percentile(us, 99),
        "mean_us": sum(us) / len(us) if us else 0.0,
        "max_us": us[-1] if us else 0.0,
        "socket_errors": errors["socket"],
        "status_errors": errors["status"],
        "counts": counts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Python load generator (see module docstring)")
    parser.add_argument("--url", required=True)
    parser.add_argument("--workload", type=Path, required=True)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=20.0)
    args = parser.parse_args()
    spec = json.loads(args.workload.read_text())
    spec["bodies"] = tuple(spec["bodies"])
    spec["count_headers"] = tuple(spec["count_headers"])
    workload = Workload(**spec)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(_python_load(args.url, workload, args.connections, args.duration))
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
