"""Prometheus metrics and the health check, served over HTTP from a trio task.

``GET /metrics`` answers the Prometheus text format from arbd's own ``CollectorRegistry`` (never
prometheus-client's global one, and never its ``start_http_server`` thread); ``GET /health``
answers JSON: ``{"status": "ok" | "degraded" | "down", "reasons": [...], ...}`` with HTTP 200,
200 and 503.

Nothing here is on the hot path. The feeds keep plain integers and cheap histograms
(``arbd.feed.counters``, ``arbd.histogram``); :class:`DaemonCollector` reads them when Prometheus
scrapes, so a scrape costs what it reads and a message costs nothing extra.

Names follow Prometheus conventions: ``arbd_`` prefix, base units (seconds, bytes), ``_total``
on counters, no per-symbol labels on histograms. ``docs/operations.md`` lists every family.
"""

from __future__ import annotations

import errno
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final, get_args

import trio
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from arbd.errors import ConfigError
from arbd.histogram import LatencyHistogram
from arbd.model import EVENT_CHANNEL, BookState
from arbd.status import DaemonStatus, ExchangeState

if TYPE_CHECKING:
    from arbd.config import MetricsConfig
    from arbd.daemon import Daemon
    from arbd.exchange.adapter import SessionStats
    from arbd.feed.counters import FeedCounters
    from arbd.feed.rest import RestClient

log = logging.getLogger("arbd.metrics")

MAX_REQUEST_HEAD: Final = 8192
REQUEST_TIMEOUT: Final = 5.0
MAX_HEALTH_REASONS: Final = 20


# -- health -----------------------------------------------------------------------------------


def health(
    status: DaemonStatus, book_state: dict[tuple[str, str], str]
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) for ``/health``.

    ``ok``: every exchange live and every book valid. ``degraded``: something is not (the
    reasons name the exchanges that are not live and the books that are invalid) while at least
    one exchange still serves data. ``down``: no exchange serves data (or none is configured).
    """
    reasons: list[str] = []
    serving = 0
    for ex in status.exchanges:
        if ex.state in ("live", "degraded"):
            serving += 1
        if ex.state != "live":
            detail = f": {ex.error}" if ex.error else ""
            reasons.append(f"{ex.exchange} {ex.state}{detail}")
    configured = {ex.exchange for ex in status.exchanges}
    invalid = sorted(
        (exchange, symbol, state)
        for (exchange, symbol), state in book_state.items()
        if state != "valid" and exchange in configured
    )
    for exchange, symbol, state in invalid[:MAX_HEALTH_REASONS]:
        reasons.append(f"{exchange} {symbol} book {state}")
    if len(invalid) > MAX_HEALTH_REASONS:
        reasons.append(f"and {len(invalid) - MAX_HEALTH_REASONS} more books not valid")
    if serving == 0:
        verdict = "down"
        if not status.exchanges:
            reasons.append("no exchange configured")
    elif reasons:
        verdict = "degraded"
    else:
        verdict = "ok"
    body = {
        "status": verdict,
        "reasons": reasons,
        "exchanges": {ex.exchange: ex.state for ex in status.exchanges},
        "uptime": round(status.uptime, 3),
        "version": status.version,
    }
    return (503 if verdict == "down" else 200), body


# -- the collector ----------------------------------------------------------------------------


def _histogram(name: str, doc: str, labels: list[str]) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, labels=labels)


def _add_histogram(
    family: HistogramMetricFamily, labels: list[str], hist: LatencyHistogram
) -> None:
    family.add_metric(labels, hist.cumulative(), hist.sum_ns / 1e9)


_EXCHANGE_COUNTERS: Final[
    tuple[tuple[str, str, Callable[[FeedCounters, SessionStats], int]], ...]
] = (
    (
        "arbd_messages_received",
        "WebSocket messages received from the exchange.",
        lambda c, s: c.frames,
    ),
    ("arbd_received_bytes", "Bytes received from the exchange.", lambda c, s: c.bytes),
    (
        "arbd_decode_errors",
        "Exchange messages that could not be parsed (counted and skipped).",
        lambda c, s: c.decode_errors,
    ),
    (
        "arbd_messages_ignored",
        "Well-formed exchange messages of a type arbd does not use.",
        lambda c, s: s.ignored,
    ),
    (
        "arbd_exchange_errors",
        "Error frames the exchange sent (bad symbol, rate limit).",
        lambda c, s: s.errors_reported,
    ),
    ("arbd_connections_opened", "Exchange connections opened.", lambda c, s: c.connections_opened),
    (
        "arbd_book_resyncs",
        "Order books resynchronized after a fault.",
        lambda c, s: s.book_resyncs,
    ),
    (
        "arbd_sequence_gaps",
        "Sequence gaps found in order-book streams.",
        lambda c, s: s.sequence_gaps,
    ),
    ("arbd_checksum_failures", "Order-book checksum mismatches.", lambda c, s: s.checksum_failures),
    (
        "arbd_crossed_books",
        "Crossed or locked books caught (never published).",
        lambda c, s: s.crossed_books,
    ),
)
"""Per-exchange counters read straight off the feed's totals: (family, help, reader)."""

_REST_COUNTERS: tuple[tuple[str, str, Callable[[RestClient], int]], ...] = (
    ("arbd_rest_requests", "REST attempts (instruments, book snapshots).", lambda r: r.requests),
    (
        "arbd_rest_failures",
        "REST attempts that failed (network error, HTTP 5xx, 429 or 418); each is retried.",
        lambda r: r.failures,
    ),
    (
        "arbd_rest_budget_waits",
        "REST attempts that waited for the exchange's request-weight budget.",
        lambda r: r.budget_waits,
    ),
)
"""Per-exchange counters of the feed's REST client (a reload's new feed starts them at 0)."""


class DaemonCollector(Collector):
    """Reads a running :class:`arbd.daemon.Daemon` at scrape time."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Metric]:
        yield from self._feeds()
        yield from self._hub()
        yield from self._arbitrage()

    def _feeds(self) -> Iterable[Metric]:
        daemon = self.daemon
        labels = ["exchange"]
        simple = [
            (CounterMetricFamily(name, doc, labels=labels), read)
            for name, doc, read in _EXCHANGE_COUNTERS
        ]
        events = CounterMetricFamily(
            "arbd_events",
            "Normalized events made from the exchange's messages, by channel.",
            labels=["exchange", "channel"],
        )
        reconnects = CounterMetricFamily(
            "arbd_reconnects",
            "Connections lost and reopened, by reason.",
            labels=["exchange", "reason"],
        )
        state = GaugeMetricFamily(
            "arbd_exchange_state",
            "1 for the exchange feed's current state (live, degraded, down, ...), else 0.",
            labels=["exchange", "state"],
        )
        connections = GaugeMetricFamily(
            "arbd_connections", "Exchange connections by state.", labels=["exchange", "state"]
        )
        age = GaugeMetricFamily(
            "arbd_last_message_age_seconds",
            "Seconds since the last message from the exchange.",
            labels=labels,
        )
        sub_age = GaugeMetricFamily(
            "arbd_subscription_last_data_age_seconds",
            "Seconds since the last event of one subscription (exchange, channel, symbol).",
            labels=["exchange", "channel", "symbol"],
        )
        books = GaugeMetricFamily(
            "arbd_books", "Order books by validity.", labels=["exchange", "state"]
        )
        ingest = _histogram(
            "arbd_ingest_latency_seconds",
            "Per socket read: frame receipt to normalized events.",
            labels,
        )
        publish = _histogram(
            "arbd_publish_latency_seconds",
            "Per socket read: frame receipt to events handed to every local subscriber.",
            labels,
        )
        rest = [
            (CounterMetricFamily(name, doc, labels=labels), read)
            for name, doc, read in _REST_COUNTERS
        ]
        now_ns = time.time_ns()
        book_state = daemon.hub.state.book_state
        book_counts: dict[tuple[str, str], int] = {}
        for (exchange, _symbol), book in book_state.items():
            book_counts[exchange, book] = book_counts.get((exchange, book), 0) + 1
        for exchange_id, feed in sorted(daemon.feeds.feeds.items()):
            counters = feed.ctx.counters
            session = counters.session_totals()
            ex = [exchange_id]
            for family, read in simple:
                family.add_metric(ex, read(counters, session))
            for family, read_rest in rest:
                family.add_metric(ex, read_rest(feed.ctx.rest))
            for event_type, n in counters.events_by_type.items():
                events.add_metric([exchange_id, EVENT_CHANNEL[event_type]], n)
            for reason, n in sorted(counters.reconnects.items()):
                reconnects.add_metric([exchange_id, reason], n)
            current = feed.status(book_state, time.monotonic(), now_ns).state
            for name in get_args(ExchangeState):
                state.add_metric([exchange_id, name], 1.0 if name == current else 0.0)
            by_state: dict[str, int] = {}
            for supervisor in feed.supervisors:
                by_state[supervisor.state] = by_state.get(supervisor.state, 0) + 1
                connection = supervisor.current
                if connection is None:
                    continue
                for event_type, seen in connection.last_data.items():
                    channel = EVENT_CHANNEL[event_type]
                    for symbol, at_ns in seen.items():
                        sub_age.add_metric([exchange_id, channel, symbol], (now_ns - at_ns) / 1e9)
            for name, n in sorted(by_state.items()):
                connections.add_metric([exchange_id, name], n)
            last = counters.last_frame_ns
            if last:
                age.add_metric(ex, (now_ns - last) / 1e9)
            for book in get_args(BookState):
                books.add_metric([exchange_id, book], book_counts.get((exchange_id, book), 0))
            _add_histogram(ingest, ex, counters.ingest_latency)
            _add_histogram(publish, ex, counters.publish_latency)
        yield from (family for family, _ in simple)
        yield from (family for family, _ in rest)
        yield from (events, reconnects, state, connections, age, sub_age, books, ingest, publish)

    def _hub(self) -> Iterable[Metric]:
        hub = self.daemon.hub
        published = CounterMetricFamily(
            "arbd_hub_published_events", "Events published to local subscribers."
        )
        published.add_metric([], hub.published)
        dropped = CounterMetricFamily(
            "arbd_hub_dropped_events",
            "Events a slow local subscriber lost to its policy (conflated or dropped).",
        )
        dropped.add_metric([], hub.dropped_total())
        subscribers = GaugeMetricFamily(
            "arbd_local_clients", "Local consumers attached now, by kind.", labels=["kind"]
        )
        server = self.daemon.server
        websocket = len(server.clients) if server is not None else 0
        subscribers.add_metric(["websocket"], websocket)
        # Every other hub subscriber is an arbctl subscribe stream (or an embedding program).
        subscribers.add_metric(["other"], max(0, len(hub.subscribers) - websocket))
        yield from (published, dropped, subscribers)
        if server is None:
            return
        delivery = _histogram(
            "arbd_delivery_latency_seconds",
            "Per client write: from the publish that woke the client to its bytes written.",
            [],
        )
        _add_histogram(delivery, [], server.flusher.delivery)
        accepted = CounterMetricFamily(
            "arbd_websocket_clients_accepted", "Local WebSocket clients accepted."
        )
        accepted.add_metric([], server.accepted)
        refused = CounterMetricFamily(
            "arbd_websocket_clients_refused",
            "Local WebSocket handshakes refused (limits, token, origin, path).",
        )
        refused.add_metric([], server.refused)
        slow = CounterMetricFamily(
            "arbd_websocket_clients_closed_slow",
            "Local WebSocket clients disconnected for falling behind (slow_policy).",
        )
        slow.add_metric([], server.closed_slow)
        yield from (delivery, accepted, refused, slow)

    def _arbitrage(self) -> Iterable[Metric]:
        engine = self.daemon.engine
        if engine is None:
            return
        status = engine.status()
        opened = CounterMetricFamily("arbd_opportunities_opened", "Arbitrage opportunities opened.")
        opened.add_metric([], status["opened"])
        closed = CounterMetricFamily(
            "arbd_opportunities_closed",
            "Arbitrage opportunities closed, by reason.",
            labels=["reason"],
        )
        for reason, n in sorted(status["closed"].items()):
            closed.add_metric([reason], n)
        open_now = GaugeMetricFamily("arbd_opportunities_open", "Arbitrage opportunities open now.")
        open_now.add_metric([], status["open"])
        excluded = CounterMetricFamily(
            "arbd_legs_excluded",
            "Times a market was left out of the arbitrage search, by reason.",
            labels=["reason"],
        )
        for reason, n in sorted(status["excluded"].items()):
            excluded.add_metric([reason], n)
        yield from (opened, closed, open_now, excluded)


def build_registry(daemon: Daemon) -> CollectorRegistry:
    """arbd's own registry: the daemon's families plus process and platform metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(daemon))
    ProcessCollector(namespace="arbd", registry=registry)
    PlatformCollector(registry=registry)
    return registry


# -- HTTP -------------------------------------------------------------------------------------


def parse_request_head(head: bytes) -> tuple[str, str] | None:
    """(method, path without query) of an HTTP/1.x request head, or None if it is not one."""
    line, _, _ = head.partition(b"\r\n")
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return None
    try:
        method, target = parts[0].decode("ascii"), parts[1].decode("ascii")
    except UnicodeDecodeError:
        return None
    return method, target.partition("?")[0]


def response(status: int, content_type: str, body: bytes, *, head_only: bool = False) -> bytes:
    reason = {
        200: "OK",
        400: "Bad Request",
        404: "Not Found",
        405: "Method Not Allowed",
        503: "Service Unavailable",
    }.get(status, "Error")
    headers = (
        f"HTTP/1.1 {status} {reason}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")
    return headers if head_only else headers + body


class MetricsEndpoint:
    """Answers ``/metrics`` and ``/health``; the I/O is in :func:`serve_metrics`."""

    def __init__(
        self, registry: CollectorRegistry, health_check: Callable[[], tuple[int, dict[str, Any]]]
    ) -> None:
        self.registry = registry
        self.health_check = health_check
        self.scrapes = 0

    def answer(self, head: bytes) -> bytes:
        request = parse_request_head(head)
        if request is None:
            return response(400, "text/plain; charset=utf-8", b"bad request\n")
        method, path = request
        if method not in ("GET", "HEAD"):
            return response(405, "text/plain; charset=utf-8", b"only GET and HEAD\n")
        head_only = method == "HEAD"
        if path == "/metrics":
            self.scrapes += 1
            return response(
                200, CONTENT_TYPE_LATEST, generate_latest(self.registry), head_only=head_only
            )
        if path == "/health":
            status, body = self.health_check()
            payload = json.dumps(body, separators=(",", ":")).encode() + b"\n"
            return response(status, "application/json", payload, head_only=head_only)
        return response(404, "text/plain; charset=utf-8", b"not found: try /metrics or /health\n")


async def _handle(endpoint: MetricsEndpoint, stream: trio.SocketStream) -> None:
    async with stream:
        head = b""
        with trio.move_on_after(REQUEST_TIMEOUT):
            while b"\r\n\r\n" not in head and len(head) < MAX_REQUEST_HEAD:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                head += chunk
        if not head:
            return
        try:
            await stream.send_all(endpoint.answer(head))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return  # the scraper went away


async def open_metrics_listeners(
    config: MetricsConfig, *, any_port_if_busy: bool = False
) -> list[trio.SocketListener]:
    """Listen on ``metrics.host:metrics.port``; a port in use is a ConfigError naming
    ``metrics.port`` (with ``any_port_if_busy``, as ``arbd demo`` does, a free port instead)."""
    try:
        return await trio.open_tcp_listeners(config.port, host=config.host or None)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE and any_port_if_busy:
            return await trio.open_tcp_listeners(0, host=config.host or None)
        key = "metrics.port" if exc.errno == errno.EADDRINUSE else "metrics.host"
        where = f"{config.host or '*'}:{config.port}"
        raise ConfigError(f"cannot listen on {where}: {exc.strerror or exc}", key=key) from None


async def serve_metrics(
    config: MetricsConfig,
    endpoint: MetricsEndpoint,
    *,
    any_port_if_busy: bool = False,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer ``/metrics`` and ``/health`` on ``metrics.host:metrics.port`` until cancelled.
    Reports the bound port through ``task_status`` (``metrics.port = 0`` picks a free one)."""
    listeners = await open_metrics_listeners(config, any_port_if_busy=any_port_if_busy)
    bound = listeners[0].socket.getsockname()[1]
    log.info("metrics on http://%s:%d/metrics (health: /health)", config.host, bound)
    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(_accept, endpoint, listener, nursery)
        task_status.started(bound)


async def _accept(
    endpoint: MetricsEndpoint, listener: trio.SocketListener, nursery: trio.Nursery
) -> None:
    async with listener:
        while True:
            stream = await listener.accept()
            nursery.start_soon(_handle, endpoint, stream)
