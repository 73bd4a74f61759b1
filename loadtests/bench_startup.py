"""Seconds from ``gateway demo`` to its first answered chat request, warm and cold.

    .venv/bin/python -m loadtests.bench_startup [--runs 3] [--importtime DIR] [--phases]
        [--python OTHER_VENV/bin/python]

Starts ``python -m extensions.cli demo`` on free ports, posts a chat request every
50 ms until one answers 200, stops the demo, and repeats. The first run may fill the
caches (ONNX export, router heads); the others are warm starts. ``--importtime DIR``
also writes the proxy worker's ``-X importtime`` log there (the top of it by
cumulative time is printed). ``--phases`` times, in a fresh process, the steps a proxy
worker takes before it can answer: importing LiteLLM's proxy, our modules, loading
the encoder, the routers' heads (cached) and the cache's cacheability head.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from extensions.launcher import DEMO_MASTER_KEY

BODY = {"model": "gpt-sim", "messages": [{"role": "user", "content": "Hello"}]}


def first_answer_s(
    python: str, importtime: Path | None, timeout_s: float = 180.0
) -> tuple[float, dict[str, float]]:
    """Seconds to the first answer, and the CPU seconds each process of the demo had used
    by then (a figure that a busy machine inflates much less than the wall time)."""
    from loadtests.procs import free_port, stop_group  # psutil: not in the serving install

    port, sim_port = free_port(), free_port()
    ports = ["--port", str(port), "--sim-port", str(sim_port)]
    cmd = [python, "-m", "extensions.cli", "demo", *ports]
    env = dict(os.environ)
    if importtime is not None:
        env["PYTHONPROFILEIMPORTTIME"] = "1"
    stderr = importtime.open("w") if importtime is not None else None
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    headers = {"Authorization": f"Bearer {DEMO_MASTER_KEY}"}
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr or subprocess.DEVNULL,
        start_new_session=True,
    )
    client = httpx.Client(timeout=5, headers=headers)  # one TLS context, not one per poll
    try:
        while time.monotonic() - started < timeout_s:
            if proc.poll() is not None:
                raise RuntimeError(f"gateway demo exited with {proc.returncode}")
            try:
                if client.post(url, json=BODY).status_code == 200:
                    return time.monotonic() - started, cpu_by_process(proc.pid)
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"no answer after {timeout_s:.0f}s")
    finally:
        client.close()
        stop_group(proc)
        if stderr is not None:
            stderr.close()


def cpu_by_process(pid: int) -> dict[str, float]:
    from loadtests.procs import tree

    names = {
        "extensions.cli": "demo",
        "extensions.simprovider": "sim-provider",
        "litellm.proxy.proxy_cli": "proxy",
    }
    out: dict[str, float] = {}
    for proc in tree(pid):
        cmdline = " ".join(proc.cmdline())
        name = next((v for k, v in names.items() if k in cmdline), cmdline[:40])
        times = proc.cpu_times()
        out[name] = round(out.get(name, 0.0) + times.user + times.system, 2)
    return out


def top_imports(log: Path, n: int = 15) -> list[tuple[str, float]]:
    """The top-level imports of the log, by cumulative seconds (each process's own)."""
    totals: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, raw = line[len("import time:") :].split("|")
        name, depth = raw.strip(), len(raw) - len(raw.lstrip())
        if cumulative.strip().isdigit() and depth == 1:  # imported by the program itself
            totals[name] = max(totals.get(name, 0.0), int(cumulative) / 1e6)
    return sorted(totals.items(), key=lambda kv: -kv[1])[:n]


def phases() -> dict[str, tuple[float, float]]:
    """(wall s, CPU s) of each start-up step, in the order a worker takes them."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    out: dict[str, tuple[float, float]] = {}
    mark = (time.perf_counter(), time.process_time())

    def step(name: str) -> None:
        nonlocal mark
        now = (time.perf_counter(), time.process_time())
        out[name] = (round(now[0] - mark[0], 3), round(now[1] - mark[1], 3))
        mark = now

    import litellm

    del litellm
    step("import litellm")
    import litellm.proxy.proxy_server  # noqa: F401

    step("import litellm.proxy.proxy_server")
    from extensions.app.assembly import build_cache, build_router
    from extensions.config.loader import load_gateway_config
    from extensions.embedding.encoder import sentence_encoder
    from extensions.launcher import DEFAULT_GATEWAY_CONFIG

    step("import extensions (app, pipeline, config)")
    config = load_gateway_config(DEFAULT_GATEWAY_CONFIG, environ=os.environ)
    step("load gateway.yaml")
    encoder = sentence_encoder(config.embedding)
    step("load the encoder (export cached)")
    build_router(config, DEFAULT_GATEWAY_CONFIG.parent, encoder)
    step("routers (heads cached)")
    build_cache(config, encoder, None, DEFAULT_GATEWAY_CONFIG)
    step("cache (trains the cacheability head)")
    out["torch loaded"] = (float("torch" in sys.modules), 0.0)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--importtime", type=Path, help="folder for the -X importtime log")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--python", default=sys.executable, help="the gateway's interpreter")
    parser.add_argument("--phases", action="store_true", help="time the worker's start steps")
    parser.add_argument("--child-phases", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_phases:
        print(json.dumps(phases()))
        return 0
    runs = [first_answer_s(args.python, None) for _ in range(args.runs)]
    result: dict[str, Any] = {
        "first_run_s": round(runs[0][0], 2),
        "warm_runs_s": [round(seconds, 2) for seconds, _ in runs[1:]],
        "cpu_s_by_process": [cpu for _, cpu in runs],
    }
    if args.importtime:
        args.importtime.mkdir(parents=True, exist_ok=True)
        log = args.importtime / "importtime.log"
        result["importtime_run_s"] = round(first_answer_s(args.python, log)[0], 2)
        result["top_imports_s"] = top_imports(log)
    if args.phases:
        cmd = [args.python, "-m", "loadtests.bench_startup", "--child-phases"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        result["phases_wall_cpu_s"] = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
