"""The reload watcher's change detection: stat-only polls, the whole ``extends`` chain."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from extensions.hooks.reload import chain_digest, chain_stamp

pytestmark = pytest.mark.unit


def write(path: Path, text: str, mtime_ns: int) -> None:
    path.write_text(text)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_stamp_covers_every_file_of_the_chain(tmp_path: Path) -> None:
    base, overlay = tmp_path / "base.yaml", tmp_path / "overlay.yaml"
    write(base, "cache: {}\n", 1_000_000_000)
    write(overlay, "extends: base.yaml\n", 1_000_000_000)
    digest, chain, stamp = chain_digest(overlay)
    assert [p.name for p in chain] == ["base.yaml", "overlay.yaml"]
    assert chain_stamp(chain) == stamp  # nothing touched: a poll reads nothing

    write(base, "cache: {enabled: false}\n", 2_000_000_000)  # the parent changes
    assert chain_stamp(chain) != stamp
    assert chain_digest(overlay)[0] != digest


def test_same_size_edit_is_seen_through_mtime(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    write(path, "a: 1\n", 1_000_000_000)
    digest, chain, stamp = chain_digest(path)
    write(path, "a: 2\n", 1_000_000_001)
    assert chain_stamp(chain) != stamp and chain_digest(path)[0] != digest


def test_replaced_file_is_seen_through_its_inode(tmp_path: Path) -> None:
    path, new = tmp_path / "gateway.yaml", tmp_path / "next.yaml"
    write(path, "a: 1\n", 1_000_000_000)
    _, chain, stamp = chain_digest(path)
    write(new, "a: 2\n", 1_000_000_000)  # same size and mtime, another file
    new.replace(path)
    assert chain_stamp(chain) != stamp
