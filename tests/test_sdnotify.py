import os
import socket
from pathlib import Path

import pytest

from arbd.sdnotify import Notifier, notify_address, watchdog_interval


@pytest.fixture
def listener(tmp_path: Path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(2.0)
    yield path, sock
    sock.close()


def received(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


def test_messages_arrive_as_key_value_lines(listener):
    path, sock = listener
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": path})
    assert notifier.ready("2 exchanges\nlive") is True
    assert received(sock) == {"READY": "1", "STATUS": "2 exchanges live"}
    notifier.watchdog()
    assert received(sock) == {"WATCHDOG": "1"}
    notifier.reloading()
    message = received(sock)
    assert message["RELOADING"] == "1"
    assert int(message["MONOTONIC_USEC"]) > 0
    notifier.stopping()
    assert received(sock) == {"STOPPING": "1"}
    notifier.close()


def test_abstract_namespace_socket():
    name = f"arbd-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2.0)
    try:
        assert notify_address({"NOTIFY_SOCKET": "@" + name}) == "\0" + name
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": "@" + name})
        notifier.status("ok")
        notifier.close()
        assert received(sock) == {"STATUS": "ok"}
    finally:
        sock.close()


def test_without_notify_socket_nothing_is_sent():
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert notifier.ready() is False


def test_a_missing_socket_is_logged_once_and_never_raised(tmp_path, caplog):
    notifier = Notifier(str(tmp_path / "gone.sock"))
    assert notifier.ready() is False
    assert notifier.watchdog() is False
    notifier.close()
    warnings = [r for r in caplog.records if "sd_notify" in r.getMessage()]
    assert len(warnings) == 1


def test_watchdog_interval_is_half_the_timeout_and_only_for_this_process():
    assert watchdog_interval({"WATCHDOG_USEC": "20000000"}, pid=7) == 10.0
    assert watchdog_interval({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "7"}, pid=7) == 10.0
    assert watchdog_interval({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "8"}, pid=7) is None
    assert watchdog_interval({}, pid=7) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, pid=7) is None
