"""The reload watcher's change detection: the bytes of the whole ``extends`` chain."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from extensions.app.reload import chain_digest
from extensions.config.loader import config_chain

pytestmark = pytest.mark.unit


def write(path: Path, text: str, mtime_ns: int) -> None:
    path.write_text(text)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_digest_covers_every_file_of_the_chain(tmp_path: Path) -> None:
    base, overlay = tmp_path / "base.yaml", tmp_path / "overlay.yaml"
    write(base, "cache: {}\n", 1_000_000_000)
    write(overlay, "extends: base.yaml\n", 1_000_000_000)
    chain = config_chain(overlay)
    assert [p.name for p in chain] == ["base.yaml", "overlay.yaml"]
    digest = chain_digest(chain)
    assert chain_digest(chain) == digest  # nothing touched: a poll parses nothing

    write(base, "cache: {enabled: false}\n", 2_000_000_000)  # the parent changes
    assert chain_digest(chain) != digest


def test_same_size_edit_in_the_same_clock_tick_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    write(path, "a: 1\n", 1_000_000_000)
    chain = config_chain(path)
    digest = chain_digest(chain)
    write(path, "a: 2\n", 1_000_000_000)  # same size, same modification time
    assert chain_digest(chain) != digest


def test_replaced_file_is_seen(tmp_path: Path) -> None:
    path, new = tmp_path / "gateway.yaml", tmp_path / "next.yaml"
    write(path, "a: 1\n", 1_000_000_000)
    chain = config_chain(path)
    digest = chain_digest(chain)
    write(new, "a: 2\n", 1_000_000_000)
    new.replace(path)  # as a ConfigMap's symlink swap or an editor's save does
    assert chain_digest(chain) != digest
