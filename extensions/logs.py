"""Where the gateway's own log lines go: the ``gateway.*`` loggers, to stderr.

LiteLLM configures its own loggers only; without this, our warnings would fall
back to Python's last-resort handler and INFO lines (cache outcomes, shadow-mode
comparisons, Redis recovery) would be lost. Records go through a queue to a
writer thread, so logging never blocks a request on I/O.
"""

from __future__ import annotations

import atexit
import logging
import queue
import sys
from logging.handlers import QueueHandler, QueueListener

FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
_listener: QueueListener | None = None


def configure(level: str = "INFO") -> None:
    global _listener
    logger = logging.getLogger("gateway")
    logger.setLevel(level.upper())
    logger.propagate = False
    if _listener is not None:
        return
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    writer = logging.StreamHandler(sys.stderr)
    writer.setFormatter(logging.Formatter(FORMAT))
    _listener = QueueListener(records, writer)
    _listener.start()
    atexit.register(_listener.stop)
    logger.addHandler(QueueHandler(records))
