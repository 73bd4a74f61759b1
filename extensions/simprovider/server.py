"""Command line entry point: ``python -m extensions.simprovider --config PATH``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .runtime import is_simulated_drop

DEFAULT_CONFIG = "config/simprovider.yaml"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
# Hung (timeout-fault) requests must not hold up shutdown for their full hang time.
GRACEFUL_SHUTDOWN_S = 3


class DropLogFilter(logging.Filter):
    """Hides the server's "Exception in ASGI application" record for simulated drops."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not is_simulated_drop(exc)


def install_drop_log_filter() -> None:
    """Attach ``DropLogFilter`` to uvicorn's error logger (idempotent)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, DropLogFilter) for f in logger.filters):
        logger.addFilter(DropLogFilter())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sim-provider",
        description="Simulated OpenAI / Anthropic / Gemini model provider for tests and demos.",
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="behaviour YAML file")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8010, help="port to listen on (default 8010)")
    parser.add_argument(
        "--log-level", default="warning", choices=LOG_LEVELS, help="uvicorn log level"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, load the settings and serve until interrupted. Returns an exit code
    (2 for a bad settings file)."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    import uvicorn

    from .app import create_app
    from .settings import load_sim_settings

    try:
        settings = load_sim_settings(args.config)
    except ValueError as exc:
        print(f"sim-provider: {exc}", file=sys.stderr)
        return 2
    config = uvicorn.Config(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.log_level in ("info", "debug", "trace"),
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        lifespan="off",
    )
    install_drop_log_filter()
    server = uvicorn.Server(config)
    server.run()
    return 0
