"""Hot reload through a mounted ConfigMap (deploy/kubernetes): the gateway's reload
watcher on a folder laid out as kubelet lays out a ConfigMap volume, updated as kubelet
updates it (a new timestamped folder, the ``..data`` link swapped, the old folder
deleted). The watcher resolves ``extends: gateway.yaml`` through the links, into the
timestamped folder; once kubelet deletes that folder it finds the chain again from the
mounted path and reloads."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from extensions.app.reload import ConfigReloader, Generations
from extensions.config.loader import config_chain, load_gateway_config, read_gateway_yaml
from tests.support import kubelet

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
CONFIG_FILES = [
    "gateway.yaml",
    "gateway.production.yaml",
    "litellm.yaml",
    "examples/technical_issue.txt",
]
OBSERVER = SimpleNamespace(metrics=None)  # kept by every generation: nothing to retire


def repo_files() -> dict[str, str]:
    return {name: (REPO / "config" / name).read_text() for name in CONFIG_FILES}


def reloader(mounted: Path) -> ConfigReloader:
    """The watcher with stand-ins for what it builds: a generation here is the merged
    YAML it read (the real build validates and compiles it, which other tests cover)."""

    def parts() -> Any:
        return SimpleNamespace(
            pipeline=SimpleNamespace(generation=0, decider=SimpleNamespace(handoffs=None)),
            observer=OBSERVER,
            link=None,
            verifier=None,
            config=SimpleNamespace(
                reload=SimpleNamespace(watch=True, poll_s=2),
                routers=load_gateway_config(
                    mounted, environ={"GATEWAY_REDIS_URL": "redis://r:6379/0"}
                ).routers,
            ),
            yaml=read_gateway_yaml(mounted),
        )

    return ConfigReloader(mounted, Generations(parts()), lambda _previous: parts())


def loaded(watcher: ConfigReloader) -> Any:
    """The YAML the current generation was built from."""
    return vars(watcher.generations.parts)["yaml"]


def poll_s(files: dict[str, str]) -> str:
    return files["gateway.yaml"].replace("  poll_s: 2\n", "  poll_s: 3\n", 1)


async def test_an_edit_of_the_configmap_is_reloaded(tmp_path: Path) -> None:
    root = tmp_path / "config"
    files = repo_files()
    kubelet.write_volume(root, files)
    watcher = reloader(root / "gateway.production.yaml")
    assert loaded(watcher)["reload"]["poll_s"] == 2
    # the chain's parent resolves into the timestamped folder of this version
    [parent, _] = config_chain(root / "gateway.production.yaml")
    assert parent.parent.name.startswith("..2026")

    edited = {**files, "gateway.yaml": poll_s(files)}
    old = kubelet.update_volume(root, edited, remove_old=False)
    # between the swap and the deletion a poll may still read the old parent...
    status = await watcher.check()
    assert status["generation"] in (1, 2)
    # ...once kubelet has deleted the old folder, the next poll reloads
    shutil.rmtree(old)
    status = await watcher.check()
    assert status["generation"] == 2 and status["last_error"] is None
    assert loaded(watcher)["reload"]["poll_s"] == 3
    assert (await watcher.check())["generation"] == 2  # nothing new: no reload


async def test_an_edit_of_the_overlay_is_reloaded_at_the_next_poll(tmp_path: Path) -> None:
    root = tmp_path / "config"
    files = repo_files()
    kubelet.write_volume(root, files)
    watcher = reloader(root / "gateway.production.yaml")
    overlay = files["gateway.production.yaml"] + "\nreload:\n  poll_s: 5\n"
    kubelet.update_volume(root, {**files, "gateway.production.yaml": overlay})
    status = await watcher.check()
    assert status["generation"] == 2 and status["last_error"] is None
    assert loaded(watcher)["reload"]["poll_s"] == 5


async def test_an_examples_only_edit_is_reloaded_at_the_next_poll(tmp_path: Path) -> None:
    """The watcher hashes the extends chain and the example files the routers read: an
    edit of an examples file alone is reloaded too."""
    root = tmp_path / "config"
    files = repo_files()
    kubelet.write_volume(root, files)
    watcher = reloader(root / "gateway.production.yaml")
    examples = files["examples/technical_issue.txt"] + "the app shows a blank screen\n"
    kubelet.update_volume(root, {**files, "examples/technical_issue.txt": examples})
    assert (await watcher.check())["generation"] == 2
