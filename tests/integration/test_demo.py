"""The README's demo: `gateway demo` (what `make run` starts) comes up on a machine
without Redis and without keys, and the README's own examples succeed against it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import ManagedProcess, free_port

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
STRIPPED_ENV = (
    "LITELLM_MASTER_KEY",
    "SIM_API_KEY",
    "REDIS_URL",
    "REDIS_HOST",
    "REDIS_PORT",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "DATABASE_URL",
)


def readme_block(lang: str, must_contain: str) -> str:
    for block in re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S):
        if must_contain in block:
            return str(block)
    raise AssertionError(f"README has no {lang} block containing {must_contain!r}")


@pytest.fixture(scope="module")
def demo(log_dir: Path) -> Iterator[tuple[int, ManagedProcess]]:
    port, sim_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in STRIPPED_ENV}
    cmd = [
        sys.executable,
        "-m",
        "extensions.cli",
        "demo",
        "--port",
        str(port),
        "--sim-port",
        str(sim_port),
    ]
    proc = ManagedProcess("demo", cmd, log_dir, env).start()
    proc.wait_ready(lambda: "Gateway ready" in proc.log_tail(), 120)
    yield port, proc
    proc.stop()
    assert not proc.running


def test_demo_reports_readiness(demo: tuple[int, ManagedProcess]) -> None:
    _, proc = demo
    match = re.search(r"Gateway ready on \S+ after ([0-9.]+)s", proc.log_tail())
    assert match, proc.log_tail()
    assert float(match.group(1)) < 60


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_curl_example(demo: tuple[int, ManagedProcess]) -> None:
    port, _ = demo
    script = readme_block("bash", "curl").replace("localhost:4000", f"127.0.0.1:{port}")
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "You can reset your password here: https://" in out.stdout


def run_block(port: int, must_contain: str) -> str:
    code = readme_block("python", must_contain).replace("localhost:4000", f"127.0.0.1:{port}")
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - started < 30
    return out.stdout


def test_readme_openai_example(demo: tuple[int, ManagedProcess]) -> None:
    """Chat Completions through the router, then the Responses API."""
    out = run_block(demo[0], "client.responses.create")
    assert out.startswith("ROUTE Simulated reply from sim-claude")
    assert "Simulated reply from sim-gpt-" in out


def test_readme_anthropic_example(demo: tuple[int, ManagedProcess]) -> None:
    assert run_block(demo[0], "from anthropic import Anthropic").startswith(
        "Simulated reply from sim-claude"
    )


def test_readme_embeddings_example(demo: tuple[int, ManagedProcess]) -> None:
    assert run_block(demo[0], "embeddings.create").split() == ["2", "256"]
