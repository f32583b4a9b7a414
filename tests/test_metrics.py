"""The metrics endpoint's pure parts: health verdicts, request parsing, answers."""

import json

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from arbd.metrics import MetricsEndpoint, health, parse_request_head
from arbd.status import DaemonStatus, ExchangeStatus


def exchange(name: str, state: str, error: str = "") -> ExchangeStatus:
    return ExchangeStatus(
        exchange=name,
        state=state,  # type: ignore[arg-type]
        connections=1,
        connections_live=1 if state == "live" else 0,
        symbols=["BTC/USDT"],
        messages=10,
        messages_per_s=1.0,
        last_message_age=0.1,
        reconnects=0,
        books_valid=1,
        books_invalid=0,
        error=error,
    )


def daemon_status(*exchanges: ExchangeStatus) -> DaemonStatus:
    return DaemonStatus(
        version="0.1.0",
        pid=1,
        started_at=0.0,
        uptime=12.5,
        exchanges=list(exchanges),
        clients=0,
        opportunities_open=0,
    )


def test_all_live_and_valid_is_ok():
    code, body = health(
        daemon_status(exchange("binance", "live"), exchange("okx", "live")),
        {("binance", "BTC/USDT"): "valid"},
    )
    assert (code, body["status"], body["reasons"]) == (200, "ok", [])
    assert body["exchanges"] == {"binance": "live", "okx": "live"}


def test_an_exchange_down_or_a_book_invalid_is_degraded_and_named():
    code, body = health(
        daemon_status(exchange("binance", "live"), exchange("okx", "down")),
        {("binance", "ETH/USDT"): "resyncing", ("binance", "BTC/USDT"): "valid"},
    )
    assert (code, body["status"]) == (200, "degraded")
    assert body["reasons"] == ["okx down", "binance ETH/USDT book resyncing"]


def test_nothing_serving_is_down_with_503():
    code, body = health(
        daemon_status(exchange("okx", "failed", "unknown symbol"), exchange("kraken", "down")),
        {},
    )
    assert (code, body["status"]) == (503, "down")
    assert body["reasons"] == ["okx failed: unknown symbol", "kraken down"]
    code, body = health(daemon_status(), {})
    assert (code, body["status"], body["reasons"]) == (503, "down", ["no exchange configured"])


def test_many_invalid_books_are_summarized():
    books = {("binance", f"C{i}/USDT"): "invalid" for i in range(30)}
    _, body = health(daemon_status(exchange("binance", "degraded")), books)
    assert len(body["reasons"]) == 22  # the exchange, 20 books, the summary
    assert body["reasons"][-1] == "and 10 more books not valid"


def test_request_heads():
    assert parse_request_head(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n") == ("GET", "/metrics")
    assert parse_request_head(b"GET /health?verbose=1 HTTP/1.0\r\n\r\n") == ("GET", "/health")
    assert parse_request_head(b"garbage\r\n\r\n") is None
    assert parse_request_head(b"GET /metrics SPDY/3\r\n\r\n") is None


def test_endpoint_answers_metrics_health_and_errors():
    registry = CollectorRegistry()
    Counter("arbd_test_things", "Things.", registry=registry).inc(3)
    endpoint = MetricsEndpoint(registry, lambda: (503, {"status": "down", "reasons": ["x"]}))

    answer = endpoint.answer(b"GET /metrics HTTP/1.1\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert families["arbd_test_things"].samples[0].value == 3.0

    head, _, body = endpoint.answer(b"GET /health HTTP/1.1\r\n\r\n").partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable")
    assert json.loads(body) == {"status": "down", "reasons": ["x"]}

    assert endpoint.answer(b"HEAD /health HTTP/1.1\r\n\r\n").endswith(b"\r\n\r\n")
    assert endpoint.answer(b"POST /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405")
    assert endpoint.answer(b"GET /nope HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404")
    assert endpoint.answer(b"\x00\x01\r\n\r\n").startswith(b"HTTP/1.1 400")
