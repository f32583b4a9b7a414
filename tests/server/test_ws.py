"""The local WebSocket server over real loopback sockets, fed by a real Hub."""

from __future__ import annotations

import json

import pytest
import trio
import trio.lowlevel
from hypothesis import given, settings
from hypothesis import strategies as st

from arbd.hub import Hub
from arbd.model import encode_event

from .conftest import (
    MARKETS,
    Closed,
    Refused,
    open_client,
    opportunity,
    quote,
    running_server,
    status,
    subscribed,
    trade,
    until_closed,
    wait_until,
)


async def until_pong(client) -> list[dict]:
    """Everything the client receives before the answer to a ping: a barrier that proves the
    server has nothing more queued for it right now."""
    client.send({"action": "ping", "id": "barrier"})
    received = []
    with trio.fail_after(5):
        while (message := await client.receive())["type"] != "pong":
            received.append(message)
    return received


def healthy_lags(messages: list[dict]) -> list[dict]:
    return [m for m in messages if m["type"] == "lag"]


def wire(*events) -> list[dict]:
    return [json.loads(encode_event(e)) for e in events]


async def test_hello_names_the_markets_and_channels():
    async with running_server() as server, open_client(server.url) as client:
        hello = await client.receive()
    assert hello["type"] == "hello"
    assert hello["protocol"] == 1
    assert hello["exchanges"] == ["binance", "kraken"]
    assert hello["symbols"] == ["BTC/USDT", "ETH/USDT", "XRP/USD"]
    assert hello["markets"] == MARKETS
    assert hello["channels"] == ["price", "trades", "book", "candles", "arbitrage", "status"]
    assert isinstance(hello["serverTime"], int)


async def test_many_clients_get_exactly_what_they_subscribed_to():
    hub = Hub()
    async with running_server(hub, slow_policy="drop_oldest") as server:
        async with (
            open_client(server.url) as btc,
            open_client(server.url) as kraken_prices,
            open_client(server.url) as trades,
            open_client(server.url) as union,
            open_client(server.url) as nothing,
            open_client(server.url) as narrowed,
        ):
            for client in (btc, kraken_prices, trades, union, nothing, narrowed):
                assert (await client.receive())["type"] == "hello"
            await subscribed(btc, symbols=["BTC/USDT"])
            await subscribed(kraken_prices, exchanges=["kraken"], channels=["price"])
            await subscribed(trades, channels=["trades"])
            await subscribed(union, symbols=["ETH/USDT"], exchanges=["binance"])
            reply = await subscribed(union, channels=["status"])
            assert reply["subscriptions"] == [
                {"channel": "*", "exchange": "binance", "symbol": "ETH/USDT"},
                {"channel": "status", "exchange": "*", "symbol": "*"},
            ]
            await subscribed(narrowed, symbols=["BTC/USDT", "ETH/USDT"], channels=["trades"])
            reply = await narrowed.request({"action": "unsubscribe", "symbols": ["ETH/USDT"]})
            assert reply["type"] == "unsubscribed"
            assert reply["subscriptions"] == [
                {"channel": "trades", "exchange": "*", "symbol": "BTC/USDT"}
            ]

            events = [
                quote("1", "BTC/USDT", "binance"),
                quote("2", "ETH/USDT", "binance"),
                quote("3", "BTC/USDT", "kraken"),
                trade(1, "BTC/USDT", "binance"),
                trade(2, "ETH/USDT", "binance"),
                trade(3, "XRP/USD", "kraken"),
                status("kraken"),
                status("binance", "invalid", symbol="ETH/USDT"),
                opportunity(),
            ]
            hub.publish(events[:4])
            hub.publish(events[4:])
            b1, e2, k3, t1, t2, t3, s_kraken, s_eth, arb = wire(*events)
            assert await until_pong(btc) == [b1, k3, t1, s_kraken, arb]
            assert await until_pong(kraken_prices) == [k3]
            assert await until_pong(trades) == [t1, t2, t3]
            assert await until_pong(union) == [e2, t2, s_kraken, s_eth]
            assert await until_pong(nothing) == []
            assert await until_pong(narrowed) == [t1]


async def test_subscribe_sends_current_state_then_live_updates():
    hub = Hub()
    hub.publish([status("binance"), quote("1"), quote("2"), quote("9", "ETH/USDT"), trade(1)])
    hub.publish([opportunity("op1"), opportunity("op2"), opportunity("op2", "close")])
    async with running_server(hub) as server, open_client(server.url) as client:
        await client.receive()  # hello
        reply = await subscribed(client, symbols=["BTC/USDT"], exchanges=["binance"], id=5)
        assert reply["id"] == 5
        # Live events published after the subscribe come after the whole snapshot.
        hub.publish([quote("3"), trade(2)])
        received = await until_pong(client)
    # Status first, then the latest price (not the first one, not ETH), the open opportunity
    # only (op2 closed), never the trade that happened before; then the live events.
    assert received == wire(status("binance"), quote("2"), opportunity("op1"), quote("3"), trade(2))


async def test_resubscribing_keeps_order_old_events_reply_snapshot_live():
    hub = Hub()
    hub.publish([quote("7", "ETH/USDT")])
    async with running_server(hub, slow_policy="drop_oldest") as server:
        async with open_client(server.url) as client:
            await client.receive()
            await subscribed(client, channels=["trades"])
            # Published before the second subscribe reaches the server, still in the old
            # subscriber's buffer when it is replaced: delivered before the reply.
            hub.publish([trade(1)])
            client.send({"action": "subscribe", "symbols": ["ETH/USDT"], "channels": ["price"]})
            first = await client.receive()
            reply = await client.receive()
            snapshot = await client.receive()
            hub.publish([trade(2), quote("8", "ETH/USDT")])
            live = await until_pong(client)
    assert first == wire(trade(1))[0]
    assert reply["type"] == "subscribed"
    assert snapshot == wire(quote("7", "ETH/USDT"))[0]
    assert live == wire(trade(2), quote("8", "ETH/USDT"))


async def test_ping_pong_and_protocol_pings():
    async with running_server() as server, open_client(server.url) as client:
        await client.receive()
        pong = await client.request({"action": "ping", "id": "abc"})
        assert pong["type"] == "pong"
        assert pong["id"] == "abc"
        # A WebSocket-level ping is answered by the protocol with a pong frame.
        client.protocol.send_ping(b"hi")
        await client.flush()
        with trio.fail_after(5):
            while not client.pongs:
                await client._read()
        assert client.pongs == [b"hi"]
        assert (await client.request({"action": "ping", "id": 2}))["id"] == 2


async def test_bad_messages_get_errors_naming_the_field_and_the_connection_stays_open():
    async with running_server() as server, open_client(server.url) as client:
        await client.receive()
        cases = [
            ("not json", "invalid_json", None),
            ('{"action":"subscribe","symbols":"BTC/USDT","id":1}', "invalid_message", 1),
            ('{"action":"teleport","id":"x"}', "unknown_action", "x"),
            ('{"action":"subscribe","symbols":["DOGE/USDT"],"id":2}', "unknown_symbol", 2),
            ('{"action":"subscribe","exchanges":["ftx"],"id":3}', "unknown_exchange", 3),
            ('{"action":"subscribe","channels":["trade"],"id":4}', "unknown_channel", 4),
            (
                '{"action":"subscribe","symbols":["XRP/USD"],"exchanges":["binance"],"id":5}',
                "unknown_symbol",
                5,
            ),
        ]
        for text, code, id in cases:
            error = await client.request(text)
            assert error["type"] == "error", error
            assert (error["code"], error["id"]) == (code, id)
            assert "\n" not in error["message"]
        assert (await client.request({"action": "ping"}))["type"] == "pong"
        # Nothing was subscribed by the failed requests.
        assert server.clients and all(c.sub is None for c in server.clients)
        assert server.internal_errors == 0


async def test_unknown_symbol_error_names_the_field():
    async with running_server() as server, open_client(server.url) as client:
        await client.receive()
        error = await client.request(
            {"action": "subscribe", "symbols": ["BTC/USDT", "BTC/USDC"], "id": 9}
        )
    assert error["message"] == (
        "symbols[1]: BTC/USDC is not streamed by any exchange; did you mean BTC/USDT?"
    )


async def test_a_stalled_client_does_not_delay_a_healthy_one_and_is_conflated():
    hub = Hub()
    symbols = [f"S{i}/USDT" for i in range(40)]
    async with running_server(hub, sndbuf=4096, buffer=20) as server:
        async with (
            open_client(server.url) as healthy,
            open_client(server.url, rcvbuf=4096) as stalled,
        ):
            for client in (healthy, stalled):
                await client.receive()
                await subscribed(client)
            [conn] = [c for c in server.clients if c.peer.endswith(f":{stalled.port}")]
            rounds = 400
            for n in range(rounds):
                # Ten of the forty symbols per round, in turn.
                batch = [symbols[(n * 10 + i) % len(symbols)] for i in range(10)]
                hub.publish([quote(str(n), s) for s in batch])
                # The healthy client gets every update of this round: nothing is conflated for
                # a client that keeps up.
                with trio.fail_after(5):
                    got = await healthy.receive_all(len(batch))
                assert [(m["symbol"], m["bid"]) for m in got] == [(s, str(n)) for s in batch]
                assert conn.sub is not None
                assert len(conn.sub) <= 20  # the stalled client's buffer never grows past it
            assert healthy_lags(got) == []
            assert conn.output.lost > 0
            # The stalled client reads again: it is told what it lost and ends on the latest
            # price of every symbol still in its buffer (the last two rounds: 20 keys; older
            # keys were evicted for newer ones when the buffer was full).
            final = {
                symbols[(n * 10 + i) % len(symbols)]: str(n)
                for n in (rounds - 2, rounds - 1)
                for i in range(10)
            }
            latest: dict[str, str] = {}
            lags = []
            with trio.fail_after(10):
                while any(latest.get(symbol) != bid for symbol, bid in final.items()):
                    message = await stalled.receive()
                    if message["type"] == "lag":
                        lags.append(message)
                    else:
                        latest[message["symbol"]] = message["bid"]
            assert lags
            assert lags[-1]["policy"] == "conflate"
            assert sum(m["dropped"] for m in lags) == lags[-1]["total"]


async def test_drop_oldest_accounts_for_every_event():
    hub = Hub()
    total = 3000
    async with running_server(hub, sndbuf=4096, buffer=50, slow_policy="drop_oldest") as server:
        async with open_client(server.url, rcvbuf=4096) as stalled:
            await stalled.receive()
            await subscribed(stalled, channels=["trades"])
            [conn] = list(server.clients)
            for n in range(total):
                hub.publish([trade(n)])
                assert conn.sub is not None and len(conn.sub) <= 50
                if n % 100 == 0:
                    await trio.lowlevel.checkpoint()  # the writer runs: it blocks on the socket
            assert conn.output.lost > 0
            sequences: list[int] = []
            dropped = 0
            with trio.fail_after(10):
                while len(sequences) + dropped < total:
                    message = await stalled.receive()
                    if message["type"] == "lag":
                        dropped += message["dropped"]
                    else:
                        sequences.append(message["sequence"])
            # Oldest first and never reordered, up to the newest; what was not delivered was
            # counted as lost and reported.
            assert sequences == sorted(sequences)
            assert sequences[-1] == total - 1
            assert dropped == conn.output.lost


@pytest.mark.parametrize("sndbuf", [None, 4096])
@pytest.mark.parametrize("batches", ["one", "each", "each, everything"])
async def test_a_long_backlog_arrives_whole_and_in_order(sndbuf, batches):
    """Thousands of frames pending at once, in one published batch or in thousands (more
    than one ``writev`` takes), to a client with a filter or wanting everything: what a full
    socket buffer did not take follows in order, with nothing lost or repeated."""
    hub = Hub()
    total = 3079
    async with running_server(hub, sndbuf=sndbuf, buffer=10 * total) as server:
        async with open_client(server.url) as client:
            await client.receive()
            if batches == "each, everything":
                await subscribed(client)
            else:
                await subscribed(client, channels=["trades"])
            # No await in between: one flush holds all of them.
            if batches == "one":
                hub.publish([trade(n) for n in range(total)])
            else:
                for n in range(total):
                    hub.publish([trade(n)])
            with trio.fail_after(10):
                sequences = [(await client.receive())["sequence"] for _ in range(total)]
            assert sequences == list(range(total))


async def test_disconnect_policy_closes_an_overflowing_client_with_1008():
    hub = Hub()
    async with running_server(hub, sndbuf=4096, buffer=30, slow_policy="disconnect") as server:
        async with (
            open_client(server.url) as healthy,
            open_client(server.url, rcvbuf=4096) as stalled,
        ):
            for client in (healthy, stalled):
                await client.receive()
                await subscribed(client, channels=["trades"])
            n = 0
            with trio.fail_after(10):
                while server.closed_slow == 0 and not any(
                    c.sub is not None and c.sub.overflowed for c in server.clients
                ):
                    hub.publish([trade(n)])
                    assert (await healthy.receive())["sequence"] == n
                    n += 1
            _, code = await until_closed(stalled)
            assert code == 1008
            # The healthy client is still served.
            hub.publish([trade(n)])
            assert (await healthy.receive())["sequence"] == n
            await wait_until(lambda: server.closed_slow == 1)


async def test_disconnect_policy_drops_a_client_whose_write_stays_blocked():
    hub = Hub()
    async with running_server(
        hub, sndbuf=4096, buffer=100_000, slow_policy="disconnect", slow_deadline=0.2
    ) as server:
        async with open_client(server.url, rcvbuf=4096) as stalled:
            await stalled.receive()
            await subscribed(stalled, channels=["trades"])
            for n in range(2000):  # far more than the socket buffers hold; below `buffer`
                hub.publish([trade(n)])
            await wait_until(lambda: not server.clients)
            assert server.closed_slow == 1


async def test_client_limit_refuses_with_503_until_a_slot_frees():
    async with running_server(max_clients=2) as server:
        async with open_client(server.url) as first, open_client(server.url):
            with pytest.raises(Refused) as refused:
                async with open_client(server.url):
                    pass
            assert refused.value.status == 503
            assert b"too many clients" in refused.value.body
            await first.close()
            await wait_until(lambda: len(server.clients) == 1)
            async with open_client(server.url) as third:
                assert (await third.receive())["type"] == "hello"


async def test_a_message_over_the_size_limit_closes_with_1009():
    async with running_server(max_message_bytes=300) as server, open_client(server.url) as client:
        await client.receive()
        assert (await client.request({"action": "ping", "id": "x" * 200}))["type"] == "pong"
        client.send({"action": "ping", "id": "x" * 400})
        with pytest.raises(Closed) as closed:
            await client.receive()
    assert closed.value.code == 1009


async def test_too_many_subscriptions_is_an_error_and_nothing_changes():
    async with running_server(max_subscriptions=3) as server, open_client(server.url) as client:
        await client.receive()
        await subscribed(client, symbols=["BTC/USDT"], channels=["price", "trades"])
        error = await client.request(
            {"action": "subscribe", "symbols": ["ETH/USDT"], "channels": ["price", "trades"]}
        )
        assert error["code"] == "too_many_subscriptions"
        assert error["message"] == "this would make 4 subscriptions; the limit is 3 per client"
        reply = await subscribed(client, symbols=["ETH/USDT"], channels=["price"])
        assert len(reply["subscriptions"]) == 3


async def test_a_client_flooding_messages_is_rate_limited_then_disconnected():
    async with running_server(max_messages_per_s=5) as server, open_client(server.url) as client:
        await client.receive()
        for i in range(40):
            client.send({"action": "ping", "id": i})
        await client.flush()
        replies, code = await until_closed(client)
        await wait_until(lambda: server.closed_slow == 1)
    assert code == 1008
    kinds = [r["type"] for r in replies]
    assert kinds[:5] == ["pong"] * 5  # the burst allowance
    limited = [r for r in replies if r["type"] == "error"]
    assert limited and all(r["code"] == "rate_limited" for r in limited)
    assert len(replies) < 40  # disconnected before it was all answered


async def test_token_is_required_when_configured():
    token = "s3cret-token-0123456789"
    async with running_server(token=token) as server:
        for headers in ({}, {"Authorization": "Bearer wrong-token-00000000"}):
            with pytest.raises(Refused) as refused:
                async with open_client(server.url, headers=headers):
                    pass
            assert refused.value.status == 401
        async with open_client(server.url, headers={"Authorization": f"Bearer {token}"}) as ok:
            assert (await ok.receive())["type"] == "hello"
        async with open_client(f"{server.url}?token={token}") as ok:
            assert (await ok.receive())["type"] == "hello"
        assert server.refused == 2


async def test_a_non_loopback_server_needs_its_token(tmp_path):
    token = "s3cret-token-0123456789"
    # Every interface: reachable from the network, so the token is enforced (here over
    # loopback, which is one of those interfaces).
    async with running_server(host="0.0.0.0", token=token) as server:
        url = f"ws://127.0.0.1:{server.port}/ws"
        with pytest.raises(Refused) as refused:
            async with open_client(url):
                pass
        assert refused.value.status == 401
        async with open_client(url, headers={"Authorization": f"Bearer {token}"}) as client:
            assert (await client.receive())["type"] == "hello"


async def test_origins_are_checked_when_configured():
    async with running_server(allowed_origins=["https://dash.example"]) as server:
        with pytest.raises(Refused) as refused:
            async with open_client(server.url, headers={"Origin": "https://evil.example"}):
                pass
        assert refused.value.status == 403
        async with open_client(server.url, headers={"Origin": "https://dash.example"}) as c:
            assert (await c.receive())["type"] == "hello"
        async with open_client(server.url) as c:  # not a browser: no Origin header
            assert (await c.receive())["type"] == "hello"


async def test_other_paths_are_404():
    async with running_server() as server:
        with pytest.raises(Refused) as refused:
            async with open_client(server.url.replace("/ws", "/other")):
                pass
    assert refused.value.status == 404


async def test_shutdown_closes_every_client_with_1001():
    hub = Hub()
    async with trio.open_nursery() as outer:
        server_scope = trio.CancelScope()
        started = trio.Event()
        box = {}

        async def serve():
            with server_scope:
                async with running_server(hub) as server:
                    box["server"] = server
                    started.set()
                    await trio.sleep_forever()

        outer.start_soon(serve)
        await started.wait()
        server = box["server"]
        async with open_client(server.url) as a, open_client(server.url) as b:
            for client in (a, b):
                await client.receive()
                await subscribed(client)
            hub.publish([trade(1)])
            assert (await a.receive())["type"] == "trade"
            server_scope.cancel()
            for client in (a, b):
                _, code = await until_closed(client, timeout=3)
                assert code == 1001


_fuzz = st.one_of(
    st.binary(max_size=80),
    st.text(max_size=80).map(str.encode),
    st.fixed_dictionaries(
        {"action": st.sampled_from(["subscribe", "unsubscribe", "ping", "x"])},
        optional={
            "symbols": st.lists(st.sampled_from(["BTC/USDT", "XRP/USD", "nope", ""]), max_size=3),
            "exchanges": st.lists(st.sampled_from(["binance", "kraken", "ftx"]), max_size=2),
            "channels": st.lists(st.sampled_from(["price", "trades", "bogus"]), max_size=2),
            "id": st.one_of(st.integers(), st.text(max_size=5), st.none(), st.booleans()),
            "extra": st.integers(),
        },
    ).map(lambda v: json.dumps(v).encode()),
)


@settings(max_examples=100, deadline=None)
@given(messages=st.lists(_fuzz, min_size=1, max_size=5))
async def test_fuzzed_messages_never_break_the_server(messages):
    hub = Hub()
    async with running_server(hub) as server, open_client(server.url) as client:
        await client.receive()
        for data in messages:
            # As binary frames: the bytes need not be UTF-8, and are parsed like text.
            client.protocol.send_binary(data)
            reply = await client.receive()
            assert reply["type"] in ("error", "subscribed", "unsubscribed", "pong"), reply
        hub.publish([quote("5")])
        assert (await client.request({"action": "ping"}))["type"] in ("price", "pong")
        assert server.internal_errors == 0
        assert len(server.clients) == 1


async def test_a_plain_http_request_is_told_to_upgrade():
    async with running_server() as server:
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            await stream.send_all(b"GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n")
            answer = b""
            with trio.fail_after(5):
                while data := await stream.receive_some(65536):
                    answer += data
        assert answer.startswith(b"HTTP/1.1 426 ")
        assert server.refused == 1
        assert server.internal_errors == 0
