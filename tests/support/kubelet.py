"""A ConfigMap volume as kubelet lays it out, for tests of what the gateway sees in a pod.

kubelet's atomic writer keeps the files in a timestamped folder ``..<time>``, points
``..data`` at it and makes every top-level name a link through ``..data``. An update
writes a new timestamped folder, renames a new link over ``..data`` (one atomic step),
then deletes the old folder. A reader that opened ``gateway.yaml`` by its mounted path
sees the old files or the new ones, never a mix; a path resolved through the links
before the update points into the deleted folder afterwards.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

DATA = "..data"
_counter = itertools.count(1)


def _write_generation(root: Path, files: Mapping[str, str]) -> str:
    name = f"..2026_01_01_00_00_00.{next(_counter):09d}"
    for relative, text in files.items():
        path = root / name / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return name


def _top_level(files: Mapping[str, str]) -> set[str]:
    return {Path(relative).parts[0] for relative in files}


def write_volume(root: Path, files: Mapping[str, str]) -> None:
    """A fresh volume holding ``files`` (path inside the volume -> text)."""
    root.mkdir(parents=True, exist_ok=True)
    generation = _write_generation(root, files)
    os.symlink(generation, root / DATA)
    for name in _top_level(files):
        os.symlink(f"{DATA}/{name}", root / name)


def update_volume(root: Path, files: Mapping[str, str], remove_old: bool = True) -> Path:
    """Replace the volume's files by ``files`` as kubelet does; the old folder is deleted
    unless ``remove_old`` is false (the moment between the swap and the deletion).
    Returns the old folder."""
    old = root / os.readlink(root / DATA)
    generation = _write_generation(root, files)
    tmp_link = root / "..data_tmp"
    os.symlink(generation, tmp_link)
    os.replace(tmp_link, root / DATA)
    for name in _top_level(files):
        if not (root / name).is_symlink():
            os.symlink(f"{DATA}/{name}", root / name)
    for entry in root.iterdir():
        if not entry.name.startswith("..") and entry.name not in _top_level(files):
            entry.unlink()
    if remove_old:
        shutil.rmtree(old)
    return old
