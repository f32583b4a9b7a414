import io
import json
import logging
import os

import pytest

from arbd.logs import RepeatFilter, add_secrets, setup_logging, under_journald


@pytest.fixture(autouse=True)
def restore_root_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_text_lines_by_default():
    out = io.StringIO()
    setup_logging("info", stream=out, environ={})
    logging.getLogger("arbd.feed").warning("okx: %s", "peer closed")
    logging.getLogger("arbd.feed").debug("not shown at info")
    line = out.getvalue().strip()
    assert line.endswith("WARNING arbd.feed: okx: peer closed")
    assert len(out.getvalue().splitlines()) == 1


def test_json_lines_with_traceback():
    out = io.StringIO()
    setup_logging("debug", "json", stream=out, environ={})
    log = logging.getLogger("arbd.test")
    log.info("hello %d", 5)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["level"] == "info"
    assert first["logger"] == "arbd.test"
    assert first["message"] == "hello 5"
    assert second["message"] == "failed"
    assert "RuntimeError: boom" in second["exc"]


def test_journald_gets_priorities_and_no_timestamps(tmp_path):
    with open(tmp_path / "journal", "w") as stream:
        stat = os.fstat(stream.fileno())
        environ = {"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"}
        assert under_journald(stream, environ)
        assert not under_journald(stream, {"JOURNAL_STREAM": "1:2"})
        setup_logging("info", stream=stream, environ=environ)
        logging.getLogger("arbd").error("kraken: checksum mismatch")
        logging.getLogger("arbd").info("started")
    assert (tmp_path / "journal").read_text().splitlines() == [
        "<3>arbd: kraken: checksum mismatch",
        "<6>arbd: started",
    ]


def test_repeated_errors_are_written_once_per_window_with_a_count():
    now = [0.0]
    repeat = RepeatFilter(window=60.0, clock=lambda: now[0])

    def passes(message: str, level: int = logging.WARNING, name: str = "arbd.feed") -> str | None:
        record = logging.LogRecord(name, level, __file__, 1, message, None, None)
        return record.getMessage() if repeat.filter(record) else None

    assert passes("okx: connection failed; retry in 1.3 s") is not None
    for delay in ("2.9", "5.1", "9.7"):
        now[0] += 5
        assert passes(f"okx: connection failed; retry in {delay} s") is None
    assert passes("binance: connection failed; retry in 1.1 s") is not None  # another feed
    assert passes("okx: started", logging.INFO) is not None  # info is never held back
    now[0] += 60
    assert passes("okx: connection failed; retry in 30.0 s") == (
        "okx: connection failed; retry in 30.0 s (and 3 more like it in the last 60 s)"
    )


def test_secrets_never_reach_a_line():
    out = io.StringIO()
    setup_logging("info", stream=out, environ={}, secrets=["s3cr3t-token"])
    logging.getLogger("arbd.server").warning("client sent token %s", "s3cr3t-token")
    add_secrets(["later-token"])
    logging.getLogger("arbd.server").warning("now later-token too")
    text = out.getvalue()
    assert "s3cr3t" not in text and "later-token" not in text
    assert "client sent token ***" in text
