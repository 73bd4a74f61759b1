"""The request log's writer: JSON lines to stdout and/or a rotating file per worker.

Lines are handed to a queue and written by a thread, so a slow disk or pipe never
blocks a request (the queue grows instead). The thread writes whatever has queued up
as one batch (one write and one flush per handler, not one per line: under load that
was a system call per request). Each worker writes its own file,
``requests-<pid>.jsonl``: rotating one file from several processes is unsafe.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

from extensions.observe.settings import RequestLogSettings

MAX_BATCH = 512  # lines per write


class RequestLog:
    def __init__(self, settings: RequestLogSettings, base_dir: Path | None = None) -> None:
        self.path: Path | None = None
        handlers: list[logging.Handler] = []
        if settings.stdout:
            handlers.append(logging.StreamHandler(sys.stdout))
        if settings.dir:
            folder = Path(settings.dir)
            if not folder.is_absolute() and base_dir is not None:
                folder = base_dir / folder
            folder.mkdir(parents=True, exist_ok=True)
            self.path = folder / f"requests-{os.getpid()}.jsonl"
            handlers.append(RotatingFileHandler(self.path, maxBytes=settings.max_bytes,
                                                backupCount=settings.backups,
                                                encoding="utf-8"))  # fmt: skip
        for handler in handlers:
            handler.setFormatter(logging.Formatter("%(message)s"))
        self._handlers = handlers
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.written = 0
        self.batches = 0

    def write(self, record: dict[str, Any]) -> None:
        if not self._handlers:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
            self._thread.start()
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str)
        self._queue.put_nowait(line)
        self.written += 1

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            lines = [line for line in batch if line is not None]
            if lines:
                self._emit("\n".join(lines))
            if len(lines) < len(batch):  # close() was called
                return

    def _emit(self, text: str) -> None:
        """One record holding the batch; a rotating file rolls over between batches."""
        record = logging.makeLogRecord({"msg": text, "levelno": logging.INFO})
        for handler in self._handlers:
            handler.handle(record)  # a failing handler reports on stderr and carries on
        self.batches += 1

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
        if self._thread is not None:
            self._queue.put_nowait(None)
            self._thread.join(timeout=10)
            self._thread = None
        for handler in self._handlers:
            handler.flush()
