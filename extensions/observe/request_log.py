"""The request log's writer: JSON lines to stdout and/or a rotating file per worker.

Lines are handed to a queue and written by a thread, so a slow disk or pipe never
blocks a request (the queue grows instead). Each worker writes its own file,
``requests-<pid>.jsonl``: rotating one file from several processes is unsafe.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
from logging.handlers import QueueListener, RotatingFileHandler
from pathlib import Path
from typing import Any

from extensions.observe.settings import RequestLogSettings


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
        self._queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._listener = QueueListener(self._queue, *handlers) if handlers else None
        self._started = False
        self.written = 0

    def write(self, record: dict[str, Any]) -> None:
        if self._listener is None:
            return
        if not self._started:
            self._listener.start()
            self._started = True
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str)
        self._queue.put_nowait(logging.makeLogRecord({"msg": line, "levelno": logging.INFO}))
        self.written += 1

    def close(self) -> None:
        if self._listener is not None and self._started:
            self._listener.stop()
            self._started = False
