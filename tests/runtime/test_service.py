"""systemd's service protocol end to end: a daemon with ``$NOTIFY_SOCKET`` bound to a datagram
socket of the test sends READY, STATUS, WATCHDOG (not while its loop is wedged), RELOADING and
STOPPING."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
import trio

from arbd.sdnotify import Notifier
from arbd.service import run_service_notifications, serving, status_line
from arbd.status import DaemonStatus, ExchangeStatus
from arbd.testing.fake import open_fake
from arbd_simplex.fake import SimplexFake

from .conftest import config_text, make_daemon, running


class Listener:
    """A datagram socket and a thread noting each message with its arrival time."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().split("\n"))
            self.messages.append((time.monotonic(), fields))

    def having(self, key: str) -> list[tuple[float, dict[str, str]]]:
        return [(t, m) for t, m in self.messages if key in m]

    async def wait_for(self, key: str, count: int = 1) -> None:
        with trio.fail_after(10):
            while len(self.having(key)) < count:
                await trio.sleep(0.01)

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def listener(tmp_path):
    listener = Listener(tmp_path / "notify.sock")
    yield listener
    listener.close()


async def test_a_daemon_under_systemd_notifies_every_state(
    tmp_path, registry, listener, monkeypatch
):
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # WatchdogSec=0.1 s: a ping every 50 ms
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    async with open_fake(SimplexFake()) as fake:
        path = tmp_path / "arbd.toml"
        daemon = make_daemon(
            path, config_text({"simplex": fake}, {"simplex": ["BTC/USDT"]}), registry
        )
        daemon.notifier = Notifier(listener.path)
        async with running(daemon):
            await listener.wait_for("READY")
            ((_, ready),) = listener.having("READY")
            assert ready["STATUS"].startswith("exchanges: simplex ")
            await listener.wait_for("WATCHDOG", 3)

            # A wedged event loop sends no pings: systemd would kill and restart it.
            wedged_at = time.monotonic()
            time.sleep(0.5)  # noqa: ASYNC251 - blocking the loop on purpose
            unwedged_at = time.monotonic()
            before = len(listener.having("WATCHDOG"))
            await listener.wait_for("WATCHDOG", before + 2)
            during = [
                t for t, _ in listener.having("WATCHDOG") if wedged_at + 0.05 < t < unwedged_at
            ]
            assert during == []

            # The status line follows the feed: the exchange goes live.
            with trio.fail_after(10):
                while not any("simplex live" in m.get("STATUS", "") for _, m in listener.messages):
                    await trio.sleep(0.05)

            await daemon.reload()
            await listener.wait_for("RELOADING")  # the listener thread may not have read it yet
            reloading = listener.having("RELOADING")
            assert len(reloading) == 1 and int(reloading[0][1]["MONOTONIC_USEC"]) > 0
            await listener.wait_for("READY", 2)
            assert listener.having("READY")[-1][0] >= reloading[0][0]
        await listener.wait_for("STOPPING")
        assert list(listener.messages[-1][1]) == ["STOPPING"]


def exchange(state: str) -> ExchangeStatus:
    return ExchangeStatus(
        exchange="okx",
        state=state,  # type: ignore[arg-type]
        connections=1,
        connections_live=0,
        symbols=["BTC/USDT"],
        messages=0,
        messages_per_s=0.0,
        last_message_age=None,
        reconnects=3,
        books_valid=0,
        books_invalid=1,
    )


def daemon_status(*states: str) -> DaemonStatus:
    return DaemonStatus(
        version="0",
        pid=1,
        started_at=0.0,
        uptime=1.0,
        exchanges=[exchange(s) for s in states],
        clients=2,
        opportunities_open=1,
    )


def test_serving_means_a_feed_live_or_recovering():
    assert serving(daemon_status("live", "failed"))
    assert serving(daemon_status("down"))  # backing off: recovering
    assert not serving(daemon_status("failed", "stopped"))
    assert serving(daemon_status())  # nothing configured is not a fault
    assert status_line(daemon_status("down")) == (
        "exchanges: okx down; 0 books valid, 1 not; 1 opportunities open; 2 local clients"
    )


class Recorded(Notifier):
    """Keeps what it would send."""

    def __init__(self) -> None:
        super().__init__("unused")
        self.sent: list[str] = []

    def send(self, **fields: str) -> bool:
        self.sent.append("\n".join(f"{k}={v}" for k, v in fields.items()))
        return True


async def test_no_watchdog_while_every_feed_has_failed(autojump_clock):
    states = ["failed"]

    class FakeDaemon:
        def status(self) -> DaemonStatus:
            return daemon_status(*states)

    notifier = Recorded()
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: run_service_notifications(
                FakeDaemon(),  # type: ignore[arg-type]
                notifier,
                watchdog_every=1.0,
                task_status=task_status,
            )
        )
        await trio.sleep(10.5)
        assert "WATCHDOG=1" not in notifier.sent
        states[0] = "down"  # recovering again
        await trio.sleep(3)
        assert notifier.sent.count("WATCHDOG=1") == 3
        nursery.cancel_scope.cancel()
    assert notifier.sent[-1] == "STOPPING=1"
