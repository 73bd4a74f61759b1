"""Run the locust scenarios headless against a local gateway on the simulated provider.

Starts ``gateway sim-provider`` and ``gateway proxy --sim-url`` (the same entry
points as ``make run`` and the tests) on free ports, with the load-test gateway
config (loadtests/loadtest_config.py: config/gateway.yaml plus two teams and four
keys), waits until the proxy is ready, runs locust headless, stops both and exits
with locust's exit code (non-zero if any request failed).

    .venv/bin/python -m loadtests.run_locust [--users 20] [--spawn-rate 5] [--run-time 60s]
        [--out reports] [--workers 1] [--limited-rpm 300] [-- EXTRA LOCUST ARGS]

Writes into --out: locust_stats.csv, locust_stats_history.csv, locust_failures.csv,
locust_exceptions.csv, locust.html, locust_outcomes.json (the gateway's outcome
counts), locust_memory.csv and locust_memory.json (the proxy's RSS per process every
--memory-every seconds, and how much it grew) and locust-stack/ (the derived
gateway.yaml and the processes' logs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from extensions.launcher import DEFAULT_SIM_CONFIG, DEMO_MASTER_KEY, DEMO_SIM_KEY, wait_http_ok
from loadtests.loadtest_config import LIMITED_RPM, loadtest_keys, write_loadtest_config
from loadtests.procs import free_port, stop_group, tree_rss_mb

REPO = Path(__file__).resolve().parents[1]
LOCUSTFILE = REPO / "loadtests" / "locustfile.py"


def gateway_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "extensions.cli", *args]


def locust_command(host: str, users: int, spawn_rate: float, run_time: str, out: Path,
                   extra: Sequence[str] = ()) -> list[str]:  # fmt: skip
    return [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "--host", host, "-u", str(users), "-r", str(spawn_rate), "-t", run_time,
        "--csv", str(out / "locust"), "--html", str(out / "locust.html"), "--only-summary",
        *extra,
    ]  # fmt: skip


class Child:
    """A process of the stack, its output in a log file, stopped with its process group."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         cwd=REPO, start_new_session=True)  # fmt: skip

    def stop(self) -> None:
        stop_group(self.proc, timeout_s=15)

    def tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


class MemorySampler:
    """RSS of every process of the proxy's tree, every ``every_s`` seconds, on a thread."""

    def __init__(self, pid: int, every_s: float) -> None:
        self.pid, self.every_s = pid, every_s
        self.rows: list[tuple[float, int, float]] = []  # (seconds since start, pid, MB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._t0 = time.monotonic()

    def start(self) -> MemorySampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.every_s):
                return

    def sample(self) -> None:
        now = round(time.monotonic() - self._t0, 1)
        self.rows += [(now, pid, round(mb, 1)) for pid, mb in tree_rss_mb(self.pid)]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.sample()

    def summary(self, warmup_s: float) -> dict[str, Any]:
        """Per process: RSS after the warm-up and at the end; the tree's total change."""
        per: dict[int, list[tuple[float, float]]] = {}
        for t, pid, mb in self.rows:
            per.setdefault(pid, []).append((t, mb))
        processes = {}
        for pid, series in per.items():
            settled = [mb for t, mb in series if t >= warmup_s] or [series[-1][1]]
            processes[str(pid)] = {"first_mb": series[0][1], "after_warmup_mb": settled[0],
                                   "end_mb": series[-1][1], "max_mb": max(mb for _, mb in series),
                                   "samples": len(series)}  # fmt: skip
        alive = [p for p in processes.values() if p["samples"] > 1]
        start = sum(p["after_warmup_mb"] for p in alive)
        end = sum(p["end_mb"] for p in alive)
        change = round(100.0 * (end - start) / start, 1) if start else None
        return {"every_s": self.every_s, "warmup_s": warmup_s, "processes": processes,
                "total_after_warmup_mb": round(start, 1), "total_end_mb": round(end, 1),
                "change_pct": change,
                "flat_within_10pct": change is not None and abs(change) <= 10.0}  # fmt: skip


def write_memory(out: Path, sampler: MemorySampler, warmup_s: float) -> dict[str, Any]:
    with (out / "locust_memory.csv").open("w") as f:
        f.write("seconds,pid,rss_mb\n")
        f.writelines(f"{t},{pid},{mb}\n" for t, pid, mb in sampler.rows)
    summary = sampler.summary(warmup_s)
    (out / "locust_memory.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def run(args: argparse.Namespace) -> int:
    out: Path = args.out.resolve()
    stack_dir = out / "locust-stack"
    stack_dir.mkdir(parents=True, exist_ok=True)
    config = write_loadtest_config(stack_dir, args.limited_rpm)
    keys = loadtest_keys()
    env = dict(os.environ)
    env.setdefault("LITELLM_MASTER_KEY", DEMO_MASTER_KEY)
    env.setdefault("SIM_API_KEY", DEMO_SIM_KEY)
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    env.update(keys)
    sim_port, proxy_port = free_port(), free_port()
    sim_url, base = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{proxy_port}"
    children: list[Child] = []
    started = time.monotonic()
    try:
        sim_cmd = gateway_cli(
            "sim-provider", "--config", str(args.sim_config), "--port", str(sim_port)
        )
        sim = Child("sim-provider", sim_cmd, env, stack_dir)
        children.append(sim)
        wait_http_ok(f"{sim_url}/_sim/health", 30, sim.proc)
        proxy_cmd = gateway_cli(
            "proxy", "--gateway-config", str(config), "--port", str(proxy_port),
            "--workers", str(args.workers), "--sim-url", sim_url, "--log-level", args.log_level,
        )  # fmt: skip
        proxy = Child("proxy", proxy_cmd, env, stack_dir)
        children.append(proxy)
        try:
            wait_http_ok(f"{base}/gateway/health/ready", args.ready_timeout, proxy.proc)
        except (RuntimeError, TimeoutError) as exc:
            print(f"run_locust: the gateway did not start: {exc}\n{proxy.tail()}", file=sys.stderr)
            return 1
        print(f"run_locust: gateway ready on {base} after {time.monotonic() - started:.1f}s; "
              f"locust {args.users} users for {args.run_time}", flush=True)  # fmt: skip
        locust_env = dict(env)
        locust_env["GATEWAY_KEYS"] = ",".join(keys.values())
        cmd = locust_command(base, args.users, args.spawn_rate, args.run_time, out, args.extra)
        sampler = MemorySampler(proxy.proc.pid, args.memory_every).start()
        try:
            code = subprocess.call(cmd, env=locust_env, cwd=REPO)
        finally:
            sampler.stop()
        memory = write_memory(out, sampler, args.memory_warmup)
        print(f"run_locust: proxy RSS {memory['total_after_warmup_mb']:.0f} MB after "
              f"{args.memory_warmup:g} s -> {memory['total_end_mb']:.0f} MB at the end "
              f"({memory['change_pct']}%, all processes)", flush=True)  # fmt: skip
        print(f"run_locust: reports in {out} (locust.html, locust_stats.csv, locust_outcomes"
              f".json, locust_memory.json); exit code {code}", flush=True)  # fmt: skip
        return code
    except KeyboardInterrupt:
        return 130
    finally:
        for child in reversed(children):
            child.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-u", "--users", type=int, default=20)
    parser.add_argument("-r", "--spawn-rate", type=float, default=5)
    parser.add_argument("-t", "--run-time", default="60s")
    parser.add_argument("--out", type=Path, default=REPO / "reports")
    parser.add_argument("--workers", type=int, default=1, help="proxy worker processes")
    parser.add_argument(
        "--limited-rpm",
        type=int,
        default=LIMITED_RPM,
        help="rpm of the rate-limited key mobile-android (0: no limit)",
    )
    parser.add_argument("--sim-config", type=Path, default=DEFAULT_SIM_CONFIG)
    parser.add_argument(
        "--log-level", default="ERROR", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    parser.add_argument("--ready-timeout", type=float, default=180)
    parser.add_argument("--memory-every", type=float, default=10.0, help="RSS sample period, s")
    parser.add_argument(
        "--memory-warmup",
        type=float,
        default=60.0,
        help="memory growth is measured from the first sample after this many seconds",
    )
    parser.add_argument("extra", nargs="*", help="after --: more locust arguments")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
