"""/metrics and /health of a running daemon against two fake exchanges over loopback."""

from __future__ import annotations

import httpx
import msgspec
import trio
from prometheus_client.parser import text_string_to_metric_families

from arbd.config import Config
from arbd.daemon import Daemon
from arbd.testing.fake import open_fake
from arbd_simplex.fake import SimplexFake

from .conftest import running


def make_config(fakes: dict[str, SimplexFake]) -> Config:
    return msgspec.convert(
        {
            "server": {"port": 0},
            "metrics": {"port": 0},
            "feed": {"backoff_base": 0.1, "backoff_cap": 0.5, "connect_timeout": 2.0},
            "arbitrage": {"min_updates": 1, "min_duration": 0.0},
            "exchanges": {
                name: {
                    "symbols": ["BTC/USDT", "ETH/USDT"],
                    "ws_url": fake.adapter_ws_url(),
                    "rest_url": fake.rest_url,
                }
                for name, fake in fakes.items()
            },
        },
        Config,
    )


async def scrape(client: httpx.AsyncClient, port: int) -> dict[str, dict[tuple, float]]:
    answer = await client.get(f"http://127.0.0.1:{port}/metrics")
    assert answer.status_code == 200
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def total(samples: dict[str, dict[tuple, float]], name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for key, v in samples.get(name, {}).items() if wanted <= set(key))


async def health(client: httpx.AsyncClient, port: int) -> tuple[int, dict]:
    answer = await client.get(f"http://127.0.0.1:{port}/health")
    return answer.status_code, answer.json()


async def wait_for_health(client: httpx.AsyncClient, port: int, status: str) -> dict:
    with trio.fail_after(15):
        while True:
            code, body = await health(client, port)
            if body["status"] == status:
                assert code == (503 if status == "down" else 200)
                return body
            await trio.sleep(0.1)


async def test_metrics_carry_every_family_and_health_follows_the_exchanges(registry):
    async with open_fake(SimplexFake()) as simplex, open_fake(SimplexFake()) as mirror:
        fakes = {"simplex": simplex, "mirror": mirror}
        daemon = Daemon(make_config(fakes), registry)
        async with running(daemon), httpx.AsyncClient() as client:
            for fake in fakes.values():
                fake.start_soon(fake.run_feed, 20.0)
            port = daemon.metrics_port
            assert port is not None
            await wait_for_health(client, port, "ok")

            samples = await scrape(client, port)
            for exchange in fakes:
                assert total(samples, "arbd_messages_received_total", exchange=exchange) > 0
                assert total(samples, "arbd_received_bytes_total", exchange=exchange) > 0
                assert total(samples, "arbd_events_total", exchange=exchange, channel="price") > 0
                assert total(samples, "arbd_books", exchange=exchange, state="valid") == 2
                assert total(samples, "arbd_exchange_state", exchange=exchange, state="live") == 1
                assert total(samples, "arbd_connections_opened_total", exchange=exchange) >= 1
                # The instruments came over REST at start.
                assert total(samples, "arbd_rest_requests_total", exchange=exchange) >= 1
                assert total(samples, "arbd_ingest_latency_seconds_count", exchange=exchange) > 0
                assert total(samples, "arbd_publish_latency_seconds_count", exchange=exchange) > 0
                ages = samples["arbd_subscription_last_data_age_seconds"]
                assert any(dict(k)["exchange"] == exchange for k in ages)
            assert total(samples, "arbd_hub_published_events_total") > 0
            assert "arbd_process_resident_memory_bytes" in samples
            assert "arbd_opportunities_open" in samples
            for name in (
                "arbd_decode_errors_total",
                "arbd_book_resyncs_total",
                "arbd_checksum_failures_total",
                "arbd_crossed_books_total",
                "arbd_rest_requests_total",
                "arbd_rest_failures_total",
                "arbd_rest_budget_waits_total",
                "arbd_last_message_age_seconds",
                "arbd_local_clients",
                "arbd_hub_dropped_events_total",
                "arbd_opportunities_opened_total",
            ):
                assert name in samples, name

            # One exchange stops: it is named, the daemon is degraded (the other still serves).
            mirror.faults.refuse_status = 503
            mirror.drop_all()
            body = await wait_for_health(client, port, "degraded")
            assert any(reason.startswith("mirror ") for reason in body["reasons"])
            assert body["exchanges"]["simplex"] == "live"
            samples = await scrape(client, port)
            assert total(samples, "arbd_reconnects_total", exchange="mirror") >= 1

            # It comes back: ok again.
            mirror.faults.refuse_status = None
            await wait_for_health(client, port, "ok")

            # Both stop: nothing is served, 503.
            for fake in fakes.values():
                fake.faults.refuse_status = 503
                fake.drop_all()
            await wait_for_health(client, port, "down")
