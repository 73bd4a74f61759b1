"""Process helpers shared by the load tools: free ports, process trees, group stops."""

from __future__ import annotations

import os
import signal
import socket
import subprocess

import psutil


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants (empty once it has gone)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_rss_mb(pid: int) -> list[tuple[int, float]]:
    """(pid, RSS in MB) of every process of the tree that is still there, root first."""
    out = []
    for proc in tree(pid):
        try:
            out.append((proc.pid, proc.memory_info().rss / 2**20))
        except psutil.Error:
            continue
    return out


def stop_group(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """SIGTERM the process group started with ``start_new_session=True``; SIGKILL it if it
    is still there after ``timeout_s``."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
