"""Where the gateway's own log lines go: the ``gateway.*`` loggers, to stderr.

LiteLLM configures its own loggers only; without this, our warnings would fall
back to Python's last-resort handler and INFO lines (shadow-mode comparisons,
Redis recovery) would be lost.
"""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str = "INFO") -> None:
    logger = logging.getLogger("gateway")
    logger.setLevel(level.upper())
    if not any(getattr(h, "_gateway", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._gateway = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.propagate = False
