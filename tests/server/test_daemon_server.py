"""The real Daemon against a fake exchange, with a WebSocket client on its local server."""

from __future__ import annotations

import trio

from arbd.config import Config, ExchangeConfig, MetricsConfig, ServerConfig
from arbd.daemon import Daemon
from arbd.plugins import load_plugins
from arbd.testing.fake import open_fake
from arbd_simplex.fake import SimplexFake

from .conftest import open_client, subscribed


async def test_a_client_of_the_daemon_gets_hello_then_live_prices():
    registry = load_plugins(env={"ARBD_LOAD_PLUGINS": "simplex"})
    async with open_fake(SimplexFake()) as fake:
        config = Config(
            server=ServerConfig(port=0),
            metrics=MetricsConfig(port=0),
            exchanges={
                "simplex": ExchangeConfig(
                    symbols=["BTC/USDT"], ws_url=fake.adapter_ws_url(), rest_url=fake.rest_url
                )
            },
        )
        daemon = Daemon(config, registry)
        async with trio.open_nursery() as nursery:
            await nursery.start(daemon.run)
            assert daemon.server is not None
            assert daemon.server_port == daemon.server.port != 0
            async with open_client(f"ws://127.0.0.1:{daemon.server_port}/ws") as client:
                hello = await client.receive()
                assert hello["type"] == "hello"
                assert hello["markets"] == {"simplex": ["BTC/USDT"]}
                await subscribed(client, symbols=["BTC/USDT"], channels=["price"], id=1)
                prices = []
                with trio.fail_after(20):
                    while len(prices) < 3:
                        await fake.pump(1)
                        with trio.move_on_after(0.2):
                            while True:
                                message = await client.receive()
                                assert message["type"] == "price", message
                                prices.append(message)
                assert all(p["exchange"] == "simplex" for p in prices)
                assert all(p["symbol"] == "BTC/USDT" for p in prices)
                # Live: each comes from a newer exchange frame than the one before.
                received = [p["receivedNs"] for p in prices]
                assert received == sorted(received)
                assert len(set(received)) == len(received)
            nursery.cancel_scope.cancel()
