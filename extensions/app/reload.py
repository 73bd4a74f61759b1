"""Hot reload of gateway.yaml: generations of the gateway, swapped atomically per worker.

Every worker watches the file (content hash every ``reload.poll_s``) and can be told
to check at once (``POST /gateway/reload``). A changed file is validated and the
new generation built in a thread, off the event loop; only then is it swapped in,
with one assignment. An invalid file is rejected with the same message as at
start-up (logged, counted in ``gateway_config_reloads_total{result="rejected"}``
and shown by ``GET /gateway/config``), and the last good generation keeps serving.

A request is pinned to the generation current when it arrived (the front holds
that generation's pipeline for the whole request; ``generation`` in its log line), so
it finishes on the configuration it started with. ``config/litellm.yaml`` is not reloaded: LiteLLM
reads it once, so changing it needs a (rolling) restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from extensions.app.assembly import Parts
from extensions.config.errors import ConfigError
from extensions.config.loader import config_chain

logger = logging.getLogger("gateway.config")
RETIRE_AFTER_S = 60.0  # replaced observers and Redis links are closed this much later


class Generations:
    """The current generation; each request is pinned to the one current when it arrived
    (the front takes ``parts`` once per request and keeps it to the end)."""

    def __init__(self, first: Parts) -> None:
        self.parts = first
        self.number = 1
        first.pipeline.generation = 1

    def advance(self, parts: Parts) -> int:
        self.number += 1
        parts.pipeline.generation = self.number
        self.parts = parts  # the swap: one assignment
        return self.number


def chain_digest(chain: Sequence[Path]) -> str:
    """One hash over the bytes of the file and every file it ``extends``. Reading a few
    kilobytes per poll is cheap; parsing YAML (to find the chain) only happens once the
    bytes changed. Content, not timestamps: two same-size edits within one clock tick
    have the same modification time."""
    digest = hashlib.sha256()
    for file in chain:
        digest.update(file.read_bytes())
    return digest.hexdigest()


class ConfigReloader:
    """Watches gateway.yaml in this worker; builds, validates and swaps generations."""

    def __init__(
        self,
        path: Path,
        generations: Generations,
        rebuild: Callable[[Parts], Parts],
        on_swap: Callable[[Parts], None] = lambda parts: None,
    ) -> None:
        self.path = path
        self.generations = generations
        self.rebuild = rebuild
        self.on_swap = on_swap
        self._chain = config_chain(path)
        self.digest = chain_digest(self._watched())
        self.loaded_at = time.time()
        self.last_error: str | None = None
        self.last_checked: float | None = None
        self.rejected = 0
        self._lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._gauge(generations.parts)

    def start(self) -> None:
        """Start this worker's background work on the running loop (idempotent): the
        current generation's observer tasks, and the watcher if ``reload.watch``."""
        self.generations.parts.observer.ensure_started()
        if not self.generations.parts.config.reload.watch:
            return
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.generations.parts.config.reload.poll_s)
            try:
                await self.check()
            except Exception:  # the watcher must survive anything
                logger.exception("gateway.yaml check failed")

    def status(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "generation": self.generations.number,
            "sha256": self.digest,
            "loaded_at": self.loaded_at,
            "last_checked": self.last_checked,
            "last_error": self.last_error,
            "rejected": self.rejected,
        }

    async def check(self, force: bool = False) -> dict[str, Any]:
        """Reload if the file changed (or ``force``); the status afterwards."""
        async with self._lock:
            self.last_checked = time.time()
            try:
                digest = await asyncio.to_thread(self._changed_digest, force)
            except ConfigError as exc:
                self._reject(str(exc), None)
                return self.status()
            except OSError as exc:
                self._reject(f"{self.path}: cannot read the file ({exc})", None)
                return self.status()
            if digest is None or (digest == self.digest and not force):
                return self.status()
            previous = self.generations.parts
            try:
                parts = await asyncio.to_thread(self.rebuild, previous)
            except ConfigError as exc:
                self._reject(str(exc), digest)
                return self.status()
            except Exception as exc:  # a failed build keeps the last good one
                logger.exception("building the new gateway.yaml generation failed")
                self._reject(f"{self.path}: {type(exc).__name__}: {exc}", digest)
                return self.status()
            number = self.generations.advance(parts)
            self.on_swap(parts)
            self.digest, self.loaded_at, self.last_error = digest, time.time(), None
            self._gauge(parts, "ok")
            self._retire(previous, parts)
            logger.warning("gateway.yaml reloaded: generation %d (sha256 %s)", number, digest[:12])
            return self.status()

    def _watched(self) -> list[Path]:
        """The chain of gateway.yaml files and the routers' example files it names."""
        config = getattr(self.generations.parts, "config", None)
        routers = getattr(config, "routers", None) or {}
        examples = [
            self.path.parent / intent.examples_file
            for spec in routers.values()
            for intent in spec.intents
            if intent.examples_file is not None
        ]
        return [*self._chain, *examples]

    def _changed_digest(self, force: bool) -> str | None:
        """The digest of the watched files; None when they hold the bytes last looked at."""
        if not force:
            with contextlib.suppress(OSError):  # a file went away: look at it all
                if chain_digest(self._watched()) == self.digest:
                    return None
        self._chain = config_chain(self.path)
        try:
            return chain_digest(self._watched())
        except OSError:  # an example file went away: rebuild (and refuse, naming it)
            return chain_digest(self._chain) + ":examples-missing"

    def _reject(self, message: str, digest: str | None) -> None:
        if digest is not None:
            self.digest = digest  # do not retry the same broken file every poll
        self.last_error = message
        self.rejected += 1
        self._gauge(self.generations.parts, "rejected")
        logger.error(
            "gateway.yaml reload rejected; still serving generation %d: %s",
            self.generations.number,
            message,
        )

    def _gauge(self, parts: Parts, result: str | None = None) -> None:
        metrics = parts.observer.metrics
        if metrics is None:
            return
        metrics.generation.set(self.generations.number)
        if result is not None:
            metrics.reloads.labels(result).inc()

    def _retire(self, old: Parts, new: Parts) -> None:
        """Close the old generation's own observer and Redis link once in-flight requests
        had time to finish (parts the new generation kept are left alone)."""

        async def later() -> None:
            await asyncio.sleep(RETIRE_AFTER_S)
            if old.observer is not new.observer:
                await old.observer.close()
            if old.link is not None and old.link is not new.link:
                await old.link.close()
            handoffs = old.pipeline.decider.handoffs
            if handoffs is not None and handoffs is not new.pipeline.decider.handoffs:
                await handoffs.close()

        if (
            old.observer is new.observer
            and old.link is new.link
            and old.pipeline.decider.handoffs is new.pipeline.decider.handoffs
        ):
            return
        task = asyncio.get_running_loop().create_task(later())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
