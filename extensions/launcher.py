"""Start the gateway's processes: the LiteLLM proxy and, for the demo, the simulated provider.

The same functions serve ``make run``, the integration tests and the
``docker-compose.yml`` services, so all of them start the proxy the same way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import httpx

from extensions.config.loader import litellm_model_groups, load_gateway_config
from extensions.config.schema import GatewayConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LITELLM_CONFIG = REPO_ROOT / "config" / "litellm.yaml"
DEFAULT_GATEWAY_CONFIG = REPO_ROOT / "config" / "gateway.yaml"
DEFAULT_SIM_CONFIG = REPO_ROOT / "config" / "simprovider.yaml"
DEMO_MASTER_KEY = "sk-gateway-demo"
DEMO_SIM_KEY = "sim-provider-key"


class Server(StrEnum):
    """ASGI server LiteLLM runs under."""

    UVICORN = "uvicorn"
    GRANIAN = "granian"


@dataclass(frozen=True)
class ProxyLaunch:
    """Everything needed to start one LiteLLM proxy process with our extensions."""

    litellm_config: Path = DEFAULT_LITELLM_CONFIG
    gateway_config: Path = DEFAULT_GATEWAY_CONFIG
    host: str = "127.0.0.1"
    port: int = 4000
    workers: int = 1
    server: Server = Server.UVICORN
    log_level: str = "ERROR"
    sim_url: str | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)

    def command(self) -> list[str]:
        cmd = [
            sys.executable, "-m", "litellm.proxy.proxy_cli",
            "--config", str(self.litellm_config),
            "--host", self.host,
            "--port", str(self.port),
            "--num_workers", str(self.workers),
        ]  # fmt: skip
        if self.server is Server.GRANIAN:
            cmd.append("--run_granian")
        return cmd

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        env = dict(base)
        # never fetch LiteLLM's model cost map from the internet at start-up
        env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        env.setdefault("LITELLM_LOG", self.log_level)
        env.setdefault("LITELLM_MODE", "PRODUCTION")  # do not read a .env file
        env.setdefault("DISABLE_SCHEMA_UPDATE", "True")
        env.setdefault("NO_DOCS", "False")
        # uvicorn kills a worker that does not answer its supervisor's ping within this
        # many seconds (default 5). A worker loading the encoder and training routers on
        # a busy machine can hold the GIL that long: it was killed and restarted in a
        # loop during the soak run. Hung workers are still replaced, a minute later.
        env.setdefault("TIMEOUT_WORKER_HEALTHCHECK", "60")
        env["GATEWAY_CONFIG"] = str(self.gateway_config)
        env["GATEWAY_LITELLM_CONFIG"] = str(self.litellm_config)
        if self.sim_url:
            env.update(sim_provider_env(self.sim_url))
        env.update(self.extra_env)
        env["PROMETHEUS_MULTIPROC_DIR"] = fresh_metrics_dir(env.get("PROMETHEUS_MULTIPROC_DIR"))
        return env


def fresh_metrics_dir(configured: str | None) -> str:
    """The folder where the workers write their Prometheus values, emptied for this start.

    prometheus_client's multiprocess mode: every worker writes its own files and
    ``/metrics`` adds them up, so the counters of all workers are one set. Values
    left by an earlier run would be added too, hence the clean-up.
    """
    if not configured:
        return tempfile.mkdtemp(prefix="gateway-metrics-")
    folder = Path(configured)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.db"):
        old.unlink()
    return str(folder)


def sim_provider_env(sim_url: str) -> dict[str, str]:
    """Environment that points the simulated deployments of litellm.yaml at ``sim_url``."""
    base = sim_url.rstrip("/")
    return {
        "SIM_OPENAI_API_BASE": f"{base}/v1",
        "SIM_ANTHROPIC_API_BASE": base,
        "SIM_GEMINI_API_BASE": base,
    }


def check_configs(launch: ProxyLaunch) -> GatewayConfig:
    """Validate our YAML (and its references to litellm.yaml) before starting anything."""
    return load_gateway_config(launch.gateway_config,
                               litellm_model_groups(launch.litellm_config))  # fmt: skip


def per_worker_state(config: GatewayConfig) -> list[str]:
    """What the config keeps in each worker's memory: with several workers each has its
    own copy (a repeat may miss on another worker, a limit counts per worker)."""
    found = []
    if config.cache.enabled and config.cache.tier.value == "memory":
        found.append("caches (cache.tier: memory)")
    if config.access.limits.store.value == "memory":
        found.append("rate limits, budgets and usage (access.limits.store: memory)")
    dashboard = config.observability.dashboard
    if dashboard.enabled and dashboard.store.value == "memory":
        found.append("dashboard counters (observability.dashboard.store: memory)")
    return found


def warn_per_worker_state(launch: ProxyLaunch, config: GatewayConfig) -> None:
    state = per_worker_state(config)
    if launch.workers > 1 and state:
        print(f"gateway: warning: {launch.workers} workers, and each keeps its own "
              f"{'; '.join(state)}. Set redis.url with cache.tier: shared, "
              "access.limits.store: redis and observability.dashboard.store: redis to "
              "share them (config/gateway.production.yaml does).", file=sys.stderr)  # fmt: skip


def sim_provider_command(config: Path, host: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "extensions.simprovider",
        "--config", str(config), "--host", host, "--port", str(port),
    ]  # fmt: skip


def wait_http_ok(
    url: str,
    timeout_s: float,
    proc: subprocess.Popen[bytes] | None = None,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Poll ``url`` until it answers 200; fail early if ``proc`` exits.

    One client for every poll: ``httpx.get`` builds a client, and its TLS context, per
    call (~25 ms of CPU), which at ten polls a second took a quarter of a core from the
    very process being waited for."""
    deadline = time.monotonic() + timeout_s
    last_error = "no answer"
    with httpx.Client(timeout=2.0, headers=dict(headers or {})) as client:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(
                    f"process exited with code {proc.returncode} before {url} was up"
                )
            try:
                r = client.get(url)
                if r.status_code == 200:
                    return
                last_error = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                last_error = type(exc).__name__
            time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout_s:.0f}s ({last_error})")


def _terminate(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def run_demo(launch: ProxyLaunch, sim_config: Path, sim_port: int) -> int:
    """Start the simulated provider and the proxy, print how to call it, wait for Ctrl-C."""
    started = time.monotonic()
    warn_per_worker_state(launch, check_configs(launch))
    env = dict(os.environ)
    env["LITELLM_MASTER_KEY"] = env.get("LITELLM_MASTER_KEY") or DEMO_MASTER_KEY
    env["SIM_API_KEY"] = env.get("SIM_API_KEY") or DEMO_SIM_KEY
    sim_url = f"http://127.0.0.1:{sim_port}"
    launch = ProxyLaunch(**{**launch.__dict__, "sim_url": sim_url})
    # SIGTERM (docker stop, a supervisor) ends the demo like Ctrl-C: children stopped too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sim = subprocess.Popen(sim_provider_command(sim_config, "127.0.0.1", sim_port), env=env)
    procs: list[subprocess.Popen[bytes]] = [sim]
    try:
        # both start at once: the proxy needs the provider for requests, not to start
        proxy = subprocess.Popen(launch.command(), env=launch.environment(env))
        procs.insert(0, proxy)
        wait_http_ok(f"{sim_url}/_sim/health", 30, sim)
        base = f"http://{launch.host}:{launch.port}"
        wait_http_ok(f"{base}/gateway/health/ready", 120, proxy)
        ready_s = time.monotonic() - started
        print(_banner(base, env["LITELLM_MASTER_KEY"], ready_s), flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        return next(p.returncode for p in procs if p.poll() is not None) or 1
    except KeyboardInterrupt:
        return 0
    finally:
        _terminate(procs)


def _banner(base: str, key: str, ready_s: float) -> str:
    shown_key = key if key == DEMO_MASTER_KEY else "$LITELLM_MASTER_KEY"
    return (
        f"\nGateway ready on {base} after {ready_s:.1f}s (simulated provider, no API keys).\n"
        f"Try:\n  curl -s {base}/v1/chat/completions -H 'Authorization: Bearer {shown_key}' "
        "-H 'Content-Type: application/json' "
        '-d \'{"model": "gpt-sim", "messages": [{"role": "user", "content": "Hello"}]}\'\n'
        "Stop with Ctrl-C.\n"
    )
