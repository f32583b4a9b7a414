"""Logging set-up for the daemon's commands (one line per record, to stderr)."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    set_level(level)


def set_level(level: str) -> None:
    """Set the root level (``logging.level``); applies at once, e.g. on a config reload."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    # Libraries log every request and handshake at INFO; that is noise at arbd's INFO.
    for name in ("httpx", "httpcore", "websockets"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
