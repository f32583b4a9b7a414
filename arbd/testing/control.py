"""A fake daemon for control-channel tests: :class:`FakeControlTarget` (a real :class:`Hub`, a
market table and scripted answers) and :class:`ControlServerThread` (the real control server in
a thread of its own, for testing synchronous clients such as ``arbctl``).

::

    target = FakeControlTarget({"binance": ["BTC/USDT"]})
    with ControlServerThread(target, "/tmp/x/control.sock") as server:
        server.publish([quote])          # runs hub.publish inside the server's trio run
        subprocess.run(["arbctl", "--socket", server.path, "status"])
"""

from __future__ import annotations

import difflib
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import TypeVar

import trio

from arbd.config import ControlConfig
from arbd.control.server import serve_control
from arbd.errors import ConfigError
from arbd.hub import Hub
from arbd.model import Arbitrage, Event
from arbd.status import DaemonStatus, ExchangeStatus

T = TypeVar("T")


class FakeControlTarget:
    """Implements ``arbd.control.target.ControlTarget`` with plain data.

    ``markets``: exchange -> subscribed symbols; ``listed``: exchange -> every symbol it could
    subscribe (defaults to the subscribed ones). ``reload_changes`` is what ``reload`` returns,
    ``reload_error`` what it raises instead. ``stops`` counts ``request_stop`` calls.
    """

    def __init__(
        self,
        markets: dict[str, list[str]],
        listed: dict[str, list[str]] | None = None,
        *,
        version: str = "0.1.0-test",
    ) -> None:
        self.hub = Hub()
        self._markets = {exchange: list(symbols) for exchange, symbols in markets.items()}
        self.listed = {e: set(s) for e, s in (listed or markets).items()}
        for exchange, symbols in self._markets.items():
            self.listed.setdefault(exchange, set()).update(symbols)
        self.version = version
        self.reload_changes: list[str] = []
        self.reload_error: ConfigError | None = None
        self.stops = 0
        self.on_stop: Callable[[], None] | None = None
        self.closed: deque[Arbitrage] = deque(maxlen=100)
        self.hub.add_processor(self._remember_closes)

    def _remember_closes(self, batch: Sequence[Event]) -> Sequence[Event]:
        self.closed.extend(e for e in batch if isinstance(e, Arbitrage) and e.event == "close")
        return ()

    def status(self) -> DaemonStatus:
        return DaemonStatus(
            version=self.version,
            pid=os.getpid(),
            started_at=1_700_000_000.0,
            uptime=3723.5,
            exchanges=[
                ExchangeStatus(
                    exchange=exchange,
                    state="live",
                    connections=1,
                    connections_live=1,
                    symbols=list(symbols),
                    messages=sum(1 for k in self.hub.state.quotes if k[0] == exchange),
                    messages_per_s=12.5,
                    last_message_age=0.25,
                    reconnects=0,
                    books_valid=sum(1 for k in self.hub.state.books if k[0] == exchange),
                    books_invalid=0,
                )
                for exchange, symbols in sorted(self._markets.items())
            ],
            clients=len(self.hub.subscribers),
            opportunities_open=len(self.hub.state.opportunities),
        )

    def markets(self) -> dict[str, list[str]]:
        return {exchange: list(symbols) for exchange, symbols in self._markets.items()}

    def opportunities(self, include_closed: bool = False) -> list[Arbitrage]:
        current = list(self.hub.state.opportunities.values())
        return [*self.closed, *current] if include_closed else current

    def _exchange(self, exchange: str) -> list[str]:
        if exchange not in self._markets:
            running = ", ".join(sorted(self._markets))
            raise ConfigError(
                f"unknown exchange {exchange!r} (running: {running})", key=f"exchanges.{exchange}"
            )
        return self._markets[exchange]

    async def add_symbols(self, exchange: str, symbols: Sequence[str]) -> list[str]:
        current = self._exchange(exchange)
        for symbol in symbols:
            if symbol not in self.listed[exchange]:
                close = difflib.get_close_matches(symbol, sorted(self.listed[exchange]), n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise ConfigError(f"{exchange} does not list {symbol}{hint}")
        added = [s for s in dict.fromkeys(symbols) if s not in current]
        current.extend(added)
        await trio.lowlevel.checkpoint()
        return added

    async def remove_symbols(self, exchange: str, symbols: Sequence[str]) -> list[str]:
        current = self._exchange(exchange)
        for symbol in symbols:
            if symbol not in current:
                raise ConfigError(f"{symbol} is not subscribed on {exchange}")
        removed = list(dict.fromkeys(symbols))
        current[:] = [s for s in current if s not in removed]
        await trio.lowlevel.checkpoint()
        return removed

    async def reload(self) -> list[str]:
        await trio.lowlevel.checkpoint()
        if self.reload_error is not None:
            raise self.reload_error
        return list(self.reload_changes)

    def request_stop(self) -> None:
        self.stops += 1
        if self.on_stop is not None:
            self.on_stop()


class ControlServerThread:
    """``serve_control`` for ``target`` on ``path``, in a trio run on a thread of its own.

    Everything touching the target (``publish``, ``call``) is run inside that trio run, so the
    hub stays single-threaded. Leaving the ``with`` block cancels the server and joins.
    """

    def __init__(
        self, target: FakeControlTarget, path: str, config: ControlConfig | None = None
    ) -> None:
        self.target = target
        self.path = path
        self.config = config or ControlConfig()
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="control-server", daemon=True)

    def __enter__(self) -> ControlServerThread:
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise RuntimeError("the control server did not start within 30 s")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        if self._thread.is_alive() and self._scope is not None:
            scope = self._scope
            trio.from_thread.run_sync(scope.cancel, trio_token=self._token)
        self._thread.join(timeout=30)
        if self._error is not None:
            raise self._error  # the server failed while the test ran

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except Exception as exc:  # noqa: BLE001 - re-raised in the test's thread
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as scope:
            self._scope = scope
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    lambda task_status: serve_control(
                        self.config, self.target, path=self.path, task_status=task_status
                    )
                )
                self._ready.set()

    def publish(self, events: Iterable[Event]) -> None:
        batch = list(events)
        self.call(lambda: self.target.hub.publish(batch))

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` inside the server's trio run and return its result."""
        return trio.from_thread.run_sync(fn, trio_token=self._token)
