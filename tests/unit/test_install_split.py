"""The serving install has no torch; the two locks are complete, disjoint and exact; the
commands that need the training extras say how to get them."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
TRAINING_STACK = {
    "torch",
    "sentence-transformers",
    "transformers",
    "optimum",
    "optimum-onnx",
    "scikit-learn",
    "scipy",
    "sympy",
}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")


def _lock_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lock", ROOT / "scripts" / "lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pins(name: str) -> dict[str, str]:
    out = {}
    for line in (ROOT / name).read_text().splitlines():
        if line and not line.startswith("#"):
            match = PIN.match(line)
            assert match, f"{name}: {line!r} is not an exact pin"
            out[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return out


def test_serving_lock_has_no_training_stack_and_the_locks_are_disjoint() -> None:
    serving, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    assert not TRAINING_STACK & set(serving)
    assert set(dev) >= TRAINING_STACK
    assert not set(serving) & set(dev)
    assert {"onnxruntime", "onnx", "tokenizers", "safetensors", "litellm"} <= set(serving)


def test_serving_lock_is_the_closure_of_the_declared_dependencies() -> None:
    """What pyproject declares, followed through the installed packages' requirements, is
    exactly the serving lock, at the installed versions."""
    lock = _lock_script()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    roots = [Requirement(r) for r in project["build-system"]["requires"]]
    roots += [Requirement(r) for r in project["project"]["dependencies"]]
    dists = lock.installed()
    serving = pins("requirements.lock")
    assert lock.closure(roots, dists) == set(serving)
    assert {name: dists[name].version for name in serving} == serving


def test_finetune_without_torch_says_how_to_get_it(tmp_path: Path) -> None:
    """torch made unimportable: a one-line message and exit code 2, no traceback."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from extensions.cli import main\n"
        f"sys.exit(main(['finetune-router', '--train', 'x.csv', '--out', {str(tmp_path)!r}]))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2
    assert "make train-deps" in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.startswith("gateway: finetune-router needs the training extras (torch")


SERVING_START = """
import sys
for name in sys.argv[2].split(","):
    sys.modules[name] = None  # importing it now raises ImportError
from pathlib import Path
from extensions.app.assembly import build_cache, build_router
from extensions.config.loader import load_gateway_config
from extensions.embedding.encoder import sentence_encoder
from extensions.launcher import DEFAULT_GATEWAY_CONFIG
config = load_gateway_config(DEFAULT_GATEWAY_CONFIG)
embedding = config.embedding.model_copy(update={"cache_dir": Path(sys.argv[1])})
config = config.model_copy(update={"embedding": embedding})
encoder = sentence_encoder(embedding)
build_router(config, DEFAULT_GATEWAY_CONFIG.parent, encoder)
build_cache(config, encoder, None, DEFAULT_GATEWAY_CONFIG)
print("ok")
"""


def test_a_worker_builds_without_the_training_stack(tmp_path: Path) -> None:
    """Encoder export, router heads (trained from scratch) and the cache: what a worker
    builds at start-up, with everything only the dev lock has made unimportable."""
    blocked = "torch,sentence_transformers,transformers,optimum,sklearn,scipy"
    done = subprocess.run(
        [sys.executable, "-c", SERVING_START, str(tmp_path), blocked],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
