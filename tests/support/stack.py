"""Handles on the simulated provider and the LiteLLM proxy, started as real processes
through the same ``gateway`` entry points that ``make run`` and docker-compose use."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import openai
import yaml

from tests.support.processes import ManagedProcess, free_port

REPO = Path(__file__).resolve().parents[2]
LITELLM_YAML = REPO / "config" / "litellm.yaml"
GATEWAY_YAML = REPO / "config" / "gateway.yaml"
SIM_YAML = REPO / "config" / "simprovider.yaml"
TEST_MASTER_KEY = "sk-test-master-7d1c0f"
TEST_SIM_KEY = "sim-test-provider-key-91ab"
NO_CACHE = {"cache": {"no-cache": True, "no-store": True}}  # extra_body: skip the caches


def _gateway_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "extensions.cli", *args]


class SimProvider:
    """The simulated provider process plus a client for its admin API."""

    def __init__(self, log_dir: Path, config: Path = SIM_YAML) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = _gateway_cli("sim-provider", "--config", str(config), "--port", str(self.port))
        self.process = ManagedProcess(f"sim-provider-{self.port}", cmd, log_dir)
        self.admin = httpx.Client(base_url=self.url, timeout=10)

    def start(self) -> SimProvider:
        self.process.start()
        self.process.wait_ready(lambda: self.admin.get("/_sim/health").status_code == 200, 30)
        return self

    def stop(self) -> None:
        self.admin.close()
        self.process.stop()

    def reset(self) -> None:
        self.admin.post("/_sim/reset").raise_for_status()

    def set_model(self, model: str, behaviour: Mapping[str, Any]) -> None:
        self.admin.put(f"/_sim/models/{model}", json=dict(behaviour)).raise_for_status()

    def clear_model(self, model: str) -> None:
        self.admin.delete(f"/_sim/models/{model}").raise_for_status()

    def stats(self) -> dict[str, Any]:
        r = self.admin.get("/_sim/stats")
        r.raise_for_status()
        return dict(r.json())

    def count(self, model: str) -> int:
        return int(self.stats()["by_model"].get(model, 0))

    def requests(self, model: str, limit: int = 10) -> list[dict[str, Any]]:
        r = self.admin.get("/_sim/requests", params={"model": model, "limit": limit})
        r.raise_for_status()
        return list(r.json()["requests"])


def derive_litellm_config(
    dest: Path, router_overrides: Mapping[str, Any] | None = None, source: Path = LITELLM_YAML
) -> Path:
    """The shipped litellm.yaml with some router settings shortened for tests."""
    data = yaml.safe_load(source.read_text())
    data.setdefault("router_settings", {}).update(router_overrides or {})
    dest.write_text(yaml.safe_dump(data, sort_keys=False))
    return dest


def derive_gateway_config(
    dest_dir: Path, edit: Callable[[dict[str, Any]], None], source: Path = GATEWAY_YAML
) -> Path:
    """The shipped gateway.yaml with ``edit`` applied, next to its examples folder."""
    data = yaml.safe_load(source.read_text())
    edit(data)
    path = dest_dir / "gateway.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    (dest_dir / "examples").symlink_to(source.parent / "examples")  # paths are relative
    return path


WORKER_STARTED = "Application startup complete."  # uvicorn, once per worker


class Proxy:
    """A LiteLLM proxy with our extensions, started by ``gateway proxy``."""

    def __init__(
        self,
        log_dir: Path,
        sim: SimProvider,
        litellm_config: Path = LITELLM_YAML,
        gateway_config: Path = GATEWAY_YAML,
        workers: int = 1,
        extra_env: Mapping[str, str] | None = None,
        name: str = "proxy",
    ) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.master_key = TEST_MASTER_KEY
        self.workers = workers
        env = dict(os.environ)
        env.update({"LITELLM_MASTER_KEY": TEST_MASTER_KEY, "SIM_API_KEY": TEST_SIM_KEY})
        env.update(extra_env or {})
        cmd = _gateway_cli(
            "proxy", "--config", str(litellm_config), "--gateway-config", str(gateway_config),
            "--port", str(self.port), "--workers", str(workers), "--sim-url", sim.url,
            "--log-level", "INFO",
        )  # fmt: skip
        self.process = ManagedProcess(f"{name}-{self.port}", cmd, log_dir, env)

    def start(self, timeout_s: float = 120) -> Proxy:
        return self.launch().wait_ready(timeout_s)

    def launch(self) -> Proxy:
        """Start the process without waiting (start several, then ``wait_ready`` each)."""
        self.process.start()
        return self

    def wait_ready(self, timeout_s: float = 120) -> Proxy:
        """Ready when every worker has started: the first one up answers the readiness
        probe while the others may still be importing (and reading gateway.yaml)."""

        def ready() -> bool:
            started = self.process.log_path.read_text(errors="replace").count(WORKER_STARTED)
            if started < self.workers:
                return False
            return httpx.get(f"{self.base_url}/gateway/health/ready", timeout=2).status_code == 200

        self.process.wait_ready(ready, timeout_s)
        return self

    def stop(self) -> None:
        self.process.stop()

    def client(self, api_key: str | None = None, **kwargs: Any) -> openai.AsyncOpenAI:
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", 30)
        return openai.AsyncOpenAI(
            base_url=f"{self.base_url}/v1",
            api_key=self.master_key if api_key is None else api_key,
            **kwargs,
        )


def proxy_pair(
    log_dir: Path,
    sim: SimProvider,
    gateway_config: Path,
    name: str,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[tuple[Proxy, Proxy]]:
    """Two proxies on one configuration (started together), stopped when done."""
    one, two = [Proxy(log_dir, sim, gateway_config=gateway_config, extra_env=extra_env,
                      name=f"{name}-{i}") for i in (1, 2)]  # fmt: skip
    yield from running(one, two)


def running(one: Proxy, two: Proxy) -> Iterator[tuple[Proxy, Proxy]]:
    """Start both proxies together (their start-ups overlap), yield them, stop them."""
    for p in (one, two):
        p.launch()
    try:
        for p in (one, two):
            p.wait_ready()
        yield one, two
    finally:
        for p in (one, two):
            p.stop()
