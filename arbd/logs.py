"""Logging for the daemon's commands: one line per record on stderr, in the form the reader wants.

``text`` (default)  ``2026-11-21 10:00:00,123 WARNING arbd.feed: okx: ...`` for a terminal.
``json``            one JSON object per line (``ts``, ``level``, ``logger``, ``message``, and
                    ``exc`` with the traceback when there is one) for log shippers.
journald            under systemd (``$JOURNAL_STREAM`` names our stderr): no timestamp (the
                    journal has one) and a ``<N>`` syslog prefix, so ``journalctl -p warning``
                    filters by arbd's own levels.

Two filters sit on the handler:

* :class:`RepeatFilter`: a warning or error repeated with only its numbers changed (a feed failing
  every few seconds: "retry in 1.3 s", "retry in 2.9 s") is written once per ``window``; the next
  one written after the window says how many were held back.
* :class:`RedactFilter`: secrets (``server.token``) never reach a log line, whoever logs them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import IO, Final

REPEAT_WINDOW: Final = 60.0
"""Seconds during which a repeated warning or error is written once."""
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_SYSLOG_PRIORITY: Final = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class RepeatFilter(logging.Filter):
    """Holds back WARNING-and-above records that repeat (same logger, level and message with
    its numbers masked) within ``window`` seconds, counting them."""

    def __init__(self, window: float = REPEAT_WINDOW, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.window = window
        self.clock = clock
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, _NUMBER.sub("#", record.getMessage()))
        now = self.clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.window:
            self._seen[key] = (seen[0], seen[1] + 1)
            return False
        held = seen[1] if seen is not None else 0
        if len(self._seen) > 1000:  # a flood of distinct messages: forget the oldest half
            for old in list(self._seen)[:500]:
                del self._seen[old]
        self._seen[key] = (now, 0)
        if held:
            record.msg = (
                f"{record.getMessage()} (and {held} more like it in the last {self.window:.0f} s)"
            )
            record.args = None
        return True


class RedactFilter(logging.Filter):
    """Replaces every registered secret in a record's message with ``***``."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            redacted = message
            for secret in self.secrets:
                redacted = redacted.replace(secret, "***")
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class JournalFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        priority = _SYSLOG_PRIORITY.get(record.levelno, 6)
        # journald splits on newlines: a traceback stays one entry only if folded.
        text = super().format(record).replace("\n", "\n    ")
        return f"<{priority}>{text}"


def under_journald(stream: IO[str], environ: Mapping[str, str]) -> bool:
    """True when ``stream`` is the journal stream systemd named in ``$JOURNAL_STREAM``."""
    device_inode = environ.get("JOURNAL_STREAM", "")
    if not device_inode:
        return False
    try:
        stat = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return device_inode == f"{stat.st_dev}:{stat.st_ino}"


_redact = RedactFilter()


def setup_logging(
    level: str = "info",
    fmt: str = "text",
    *,
    stream: IO[str] | None = None,
    environ: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
) -> logging.Handler:
    """Install arbd's one handler on the root logger and return it."""
    stream = sys.stderr if stream is None else stream
    environ = os.environ if environ is None else environ
    handler = logging.StreamHandler(stream)
    formatter: logging.Formatter
    if fmt == "json":
        formatter = JsonFormatter()
    elif under_journald(stream, environ):
        formatter = JournalFormatter()
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(formatter)
    handler.addFilter(_redact)
    handler.addFilter(RepeatFilter())
    add_secrets(secrets)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    set_level(level)
    return handler


def add_secrets(secrets: Iterable[str]) -> None:
    """Never log these strings (e.g. ``server.token``, also after a reload changes it)."""
    _redact.secrets.update(s for s in secrets if s)


def set_level(level: str) -> None:
    """Set the root level (``logging.level``); applies at once, e.g. on a config reload."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    # Libraries log every request and handshake at INFO; that is noise at arbd's INFO.
    for name in ("httpx", "httpcore", "websockets"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
