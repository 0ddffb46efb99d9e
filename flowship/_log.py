"""structlog set-up: flowship only configures logging when its own entry points ask for it."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO, cast

import structlog


def get_logger(name: str = "flowship") -> Any:
    """A structlog logger bound to ``name``."""
    return structlog.get_logger(name)


class _Stderr:
    """Whatever ``sys.stderr`` is at each write (a command run in-process may swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_for_cli() -> None:
    """Console output on a terminal, JSON lines otherwise; only if nobody configured structlog."""
    if structlog.is_configured():
        return
    renderer: Any = (
        structlog.dev.ConsoleRenderer()
        if sys.stderr.isatty()
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=cast(TextIO, _Stderr())),
        cache_logger_on_first_use=True,
    )
