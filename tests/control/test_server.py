"""The control server over real Unix sockets, against a fake daemon with a real hub."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap

import msgspec
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from arbd.config import ControlConfig
from arbd.control.server import (
    PeerCredentials,
    groups_from_proc_status,
    peer_allowed,
    serve_control,
)
from arbd.errors import ConfigError
from arbd.testing.control import FakeControlTarget

from .conftest import LineClient, opportunity, quote, status_event, trade


async def start(nursery, target, path, **config):
    return await nursery.start(
        lambda task_status: serve_control(
            ControlConfig(**config), target, path=str(path), task_status=task_status
        )
    )


async def test_status_reply_is_the_daemons_status(connect, nursery, target, socket_dir):
    path = await start(nursery, target, socket_dir / "c.sock")
    client = await connect(path)
    reply = await client.call({"cmd": "status", "id": 1})
    assert reply["ok"] is True
    assert reply["id"] == 1
    assert reply["result"] == json.loads(msgspec.json.encode(target.status()))
    assert [e["exchange"] for e in reply["result"]["exchanges"]] == ["binance", "kraken"]


async def test_requests_on_one_connection_are_answered_in_order(
    connect, nursery, target, socket_dir
):
    path = await start(nursery, target, socket_dir / "c.sock")
    client = await connect(path)
    # Three requests in one write, one of them broken: three replies, in order.
    await client.send(
        b'{"cmd":"status","id":1}\n{"cmd":"bogus","id":2}\n\n{"cmd":"reload","id":3}\n'
    )
    assert [(r["id"], r["ok"]) for r in [await client.line() for _ in range(3)]] == [
        (1, True),
        (2, False),
        (3, True),
    ]


async def test_invalid_requests_get_errors_and_the_connection_stays_open(
    connect, nursery, target, socket_dir
):
    path = await start(nursery, target, socket_dir / "c.sock")
    client = await connect(path)
    await client.send(b"this is not json\n")
    reply = await client.line()
    assert reply["ok"] is False
    assert reply["error"]["code"] == "invalid_json"
    reply = await client.call({"cmd": "subscribe", "id": "s", "channels": ["trade"]})
    assert reply == {
        "ok": False,
        "id": "s",
        "error": {
            "code": "unknown_channel",
            "message": "channels[0]: unknown channel 'trade' "
            "(price, trades, book, candles, arbitrage, status)",
        },
    }
    reply = await client.call({"cmd": "subscribe", "exchanges": ["bitstamp"]})
    assert reply["error"]["code"] == "unknown_exchange"
    assert (await client.call({"cmd": "status"}))["ok"] is True


async def test_a_line_too_long_is_refused_and_the_connection_closed(
    connect, nursery, target, socket_dir
):
    path = await start(nursery, target, socket_dir / "c.sock")
    client = await connect(path)
    await client.send(b'{"cmd":"status","id":1}\n' + b"x" * (70 * 1024))
    assert (await client.line())["id"] == 1  # the good line before it is still answered
    reply = await client.line()
    assert reply["error"]["code"] == "line_too_long"
    assert await client.at_eof()


async def test_opportunities_open_and_with_all_the_closed_ones(
    connect, nursery, target, socket_dir
):
    path = await start(nursery, target, socket_dir / "c.sock")
    target.hub.publish([opportunity("a"), opportunity("b"), opportunity("b", "update", net=0.4)])
    target.hub.publish([opportunity("a", "close")])
    client = await connect(path)
    reply = await client.call({"cmd": "opportunities", "id": 1})
    assert [(o["id"], o["event"], o["netSpreadPct"]) for o in reply["result"]] == [
        ("b", "update", 0.4)
    ]
    reply = await client.call({"cmd": "opportunities", "all": True})
    assert [(o["id"], o["event"]) for o in reply["result"]] == [("a", "close"), ("b", "update")]


async def test_symbols_add_and_remove_change_the_markets(connect, nursery, target, socket_dir):
    path = await start(nursery, target, socket_dir / "c.sock")
    client = await connect(path)
    add = {"cmd": "symbols", "op": "add", "exchange": "binance", "id": 1}
    reply = await client.call({**add, "symbols": ["SOL/USDT", "BTC/USDT"]})
    assert reply == {
        "ok": True,
        "id": 1,
        "result": {"exchange": "binance", "op": "add", "changed": ["SOL/USDT"]},
    }
    assert "SOL/USDT" in target.markets()["binance"]
    # A subscribe may now name the new symbol.
    reply = await client.call({**add, "op": "remove", "symbols": ["ETH/USDT"]})
    assert reply["result"]["changed"] == ["ETH/USDT"]
    assert target.markets()["binance"] == ["BTC/USDT", "SOL/USDT"]


async def test_refused_symbol_changes_come_back_as_config_errors(
    connect, nursery, target, socket_dir
):
    path = await start(nursery, target, socket_dir / "c.sock")
    client = await connect(path)
    reply = await client.call(
        {"cmd": "symbols", "op": "add", "exchange": "binance", "symbols": ["SOL/USDC"], "id": 7}
    )
    assert reply == {
        "ok": False,
        "id": 7,
        "error": {
            "code": "config_error",
            "message": "binance does not list SOL/USDC; did you mean SOL/USDT?",
        },
    }
    reply = await client.call(
        {"cmd": "symbols", "op": "remove", "exchange": "okx", "symbols": ["BTC/USDT"]}
    )
    assert reply["error"] == {
        "code": "config_error",
        "message": "exchanges.okx: unknown exchange 'okx' (running: binance, kraken)",
    }
    assert target.markets()["binance"] == ["BTC/USDT", "ETH/USDT"]


async def test_reload_returns_the_changes_or_the_error(connect, nursery, target, socket_dir):
    path = await start(nursery, target, socket_dir / "c.sock")
    client = await connect(path)
    target.reload_changes = ["binance: +SOL/USDT", "arbitrage.open_threshold_pct: 0.1 -> 0.2"]
    reply = await client.call({"cmd": "reload", "id": 1})
    assert reply["result"] == {"changes": target.reload_changes}
    target.reload_error = ConfigError(
        "expected int, got str", path="arbd.toml", key="feed.stale_after"
    )
    reply = await client.call({"cmd": "reload", "id": 2})
    assert reply == {
        "ok": False,
        "id": 2,
        "error": {
            "code": "config_error",
            "message": "arbd.toml: feed.stale_after: expected int, got str",
        },
    }


async def test_stop_is_answered_then_requested(connect, nursery, target, socket_dir):
    path = await start(nursery, target, socket_dir / "c.sock")
    client = await connect(path)
    assert await client.call({"cmd": "stop", "id": 1}) == {
        "ok": True,
        "id": 1,
        "result": {"stopping": True},
    }
    with trio.fail_after(5):  # requested right after the reply went out
        while target.stops == 0:
            await trio.sleep(0.01)
    assert target.stops == 1


class BrokenTarget(FakeControlTarget):
    def status(self):
        raise RuntimeError("status is broken")


async def test_a_failing_daemon_method_is_an_internal_error_not_a_crash(
    connect, nursery, socket_dir, caplog
):
    target = BrokenTarget({"binance": ["BTC/USDT"]})
    path = await start(nursery, target, socket_dir / "c.sock")
    client = await connect(path)
    reply = await client.call({"cmd": "status", "id": 1})
    assert reply["error"] == {"code": "internal_error", "message": "RuntimeError: status is broken"}
    assert "Traceback" in caplog.text  # the log has the details
    assert (await client.call({"cmd": "reload"}))["ok"] is True


# -- subscribe --------------------------------------------------------------------------------


async def test_subscribe_replies_then_sends_the_state_then_live_events(
    connect, nursery, target, socket_dir
):
    path = await start(nursery, target, socket_dir / "c.sock")
    target.hub.publish([status_event("binance"), quote("binance", "BTC/USDT", "100")])
    target.hub.publish([opportunity("a")])
    client = await connect(path)
    reply = await client.call({"cmd": "subscribe", "id": 3, "symbols": ["BTC/USDT"]})
    assert reply == {
        "ok": True,
        "id": 3,
        "result": {"symbols": ["BTC/USDT"], "exchanges": [], "channels": []},
    }
    snapshot = [await client.line() for _ in range(3)]
    assert [e["type"] for e in snapshot] == ["status", "price", "arbitrage"]
    target.hub.publish([quote("binance", "BTC/USDT", "101")])
    live = await client.line()
    assert (live["type"], live["bid"]) == ("price", "101")
    assert len(target.hub.subscribers) == 1


async def test_subscribers_get_exactly_what_their_filters_ask_for(
    connect, nursery, target, socket_dir
):
    path = await start(nursery, target, socket_dir / "c.sock")
    requests = {
        "btc-prices": {"symbols": ["BTC/USDT"], "channels": ["price"]},
        "kraken": {"exchanges": ["kraken"]},
        "trades": {"channels": ["trades"]},
    }
    clients = {}
    for name, filters in requests.items():
        clients[name] = await connect(path)
        assert (await clients[name].call({"cmd": "subscribe", **filters}))["ok"]
    target.hub.publish(
        [
            quote("binance", "ETH/USDT", "10"),
            quote("binance", "BTC/USDT", "100"),
            trade("kraken", "BTC/USD", "99"),
            quote("kraken", "BTC/USDT", "101"),
        ]
    )
    # One last event per client that only that client wants ends its stream for this test
    # (a market of its own: a second price of one market would be conflated with the first).
    target.hub.publish(
        [
            quote("okx", "BTC/USDT", "999"),
            status_event("kraken", "stale"),
            trade("binance", "BTC/USDT", "999"),
        ]
    )

    async def received(client):
        seen = []
        while not seen or seen[-1][-1] not in ("999", "stale"):
            event = await client.line()
            value = event.get("bid") or event.get("price") or event.get("state")
            seen.append((event["type"], event["exchange"], event["symbol"], value))
        return seen

    assert await received(clients["btc-prices"]) == [
        ("price", "binance", "BTC/USDT", "100"),
        ("price", "kraken", "BTC/USDT", "101"),
        ("price", "okx", "BTC/USDT", "999"),
    ]
    assert await received(clients["kraken"]) == [
        ("trade", "kraken", "BTC/USD", "99"),
        ("price", "kraken", "BTC/USDT", "101"),
        ("status", "kraken", "", "stale"),
    ]
    assert await received(clients["trades"]) == [
        ("trade", "kraken", "BTC/USD", "99"),
        ("trade", "binance", "BTC/USDT", "999"),
    ]


async def test_closing_the_client_ends_its_hub_subscription(connect, nursery, target, socket_dir):
    path = await start(nursery, target, socket_dir / "c.sock")
    client = await connect(path)
    assert (await client.call({"cmd": "subscribe"}))["ok"]
    assert len(target.hub.subscribers) == 1
    await client.aclose()
    with trio.fail_after(5):
        while target.hub.subscribers:
            await trio.sleep(0.01)


async def test_a_slow_reader_gets_conflated_prices_and_a_lag_line(
    connect, nursery, target, socket_dir
):
    path = await start(nursery, target, socket_dir / "c.sock", buffer=16)
    client = await connect(path)
    assert (await client.call({"cmd": "subscribe", "channels": ["price"]}))["ok"]
    # 100 prices of one market in one batch, more than the buffer holds: the writer cannot
    # run in between, so they are conflated.
    target.hub.publish([quote("binance", "BTC/USDT", str(100 + i)) for i in range(100)])
    lag = await client.line()
    assert lag == {"type": "lag", "dropped": 99}
    assert (await client.line())["bid"] == "199"


async def test_a_stream_that_overflows_gets_an_error_and_is_closed(
    connect, nursery, target, socket_dir
):
    path = await start(nursery, target, socket_dir / "c.sock", buffer=16)
    client = await connect(path)
    assert (await client.call({"cmd": "subscribe", "id": 4, "channels": ["trades"]}))["ok"]
    # Trades are never conflated: 17 at once do not fit a buffer of 16.
    target.hub.publish([trade("binance", "BTC/USDT", str(i)) for i in range(17)])
    reply = await client.line()
    assert reply["ok"] is False
    assert reply["id"] == 4
    assert reply["error"]["code"] == "overflow"
    assert await client.at_eof()
    assert target.hub.subscribers == []


# -- the socket file --------------------------------------------------------------------------


async def test_socket_is_mode_0660_and_removed_on_shutdown(target, socket_dir):
    path = socket_dir / "sub" / "c.sock"  # a missing directory is created
    async with trio.open_nursery() as nursery:
        await start(nursery, target, path)
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
        nursery.cancel_scope.cancel()
    assert not path.exists()


async def test_a_stale_socket_is_replaced(connect, nursery, target, socket_dir):
    path = socket_dir / "c.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))  # bound and closed without listening: what a crashed daemon leaves
    dead.close()
    assert path.exists()
    await start(nursery, target, path)
    client = await connect(str(path))
    assert (await client.call({"cmd": "status"}))["ok"]


async def test_a_live_socket_is_not_stolen(connect, nursery, target, socket_dir):
    path = socket_dir / "c.sock"
    await start(nursery, target, path)
    async with trio.open_nursery() as second:
        with pytest.raises(ConfigError) as error:
            await start(second, FakeControlTarget({}), path)
    assert str(error.value) == (
        f"{path}: another arbd is listening on this control socket "
        "(stop it, or set control.socket to another path)"
    )
    client = await connect(str(path))
    assert (await client.call({"cmd": "status"}))["result"]["exchanges"]  # the first one's


async def test_a_file_that_is_not_a_socket_is_left_alone(target, socket_dir):
    path = socket_dir / "c.sock"
    path.write_text("precious")
    async with trio.open_nursery() as nursery:
        with pytest.raises(ConfigError, match="exists and is not a socket; not removing it"):
            await start(nursery, target, path)
    assert path.read_text() == "precious"


async def test_a_path_too_long_for_a_unix_socket_is_a_config_error(target, socket_dir):
    path = socket_dir / ("x" * 120) / "c.sock"
    async with trio.open_nursery() as nursery:
        with pytest.raises(ConfigError, match="path is too long for a Unix socket"):
            await start(nursery, target, path)


async def test_the_default_location_is_under_xdg_runtime_dir(target, socket_dir):
    async with trio.open_nursery() as nursery:
        path = await nursery.start(
            lambda task_status: serve_control(
                ControlConfig(),
                target,
                env={"XDG_RUNTIME_DIR": str(socket_dir)},
                task_status=task_status,
            )
        )
        assert path == str(socket_dir / "arbd" / "control.sock")
        assert stat.S_IMODE((socket_dir / "arbd").stat().st_mode) == 0o700
        nursery.cancel_scope.cancel()


async def test_too_many_connections_are_refused_with_an_error(connect, nursery, target, socket_dir):
    path = await start(nursery, target, socket_dir / "c.sock", max_connections=1)
    first = await connect(path)
    assert (await first.call({"cmd": "status"}))["ok"]
    second = await connect(path)
    assert (await second.line())["error"]["code"] == "too_many_connections"
    assert await second.at_eof()
    await first.aclose()
    with trio.fail_after(5):
        while True:  # the slot frees once the server has seen the first one go
            third = await connect(path)
            reply = await third.call({"cmd": "status"})
            if reply["ok"]:
                break
            await trio.sleep(0.01)


# -- peers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "allowed"),
    [
        (PeerCredentials(pid=1, uid=1000, gid=1000), True),  # the daemon's own user
        (PeerCredentials(pid=1, uid=0, gid=0), True),  # root
        (PeerCredentials(pid=1, uid=1001, gid=500), True),  # primary group is the socket's
        (PeerCredentials(pid=1, uid=1001, gid=1001, groups=frozenset({4, 500})), True),
        (PeerCredentials(pid=1, uid=1001, gid=1001, groups=frozenset({4})), False),
        (PeerCredentials(pid=1, uid=1001, gid=1001), False),
    ],
)
def test_peer_decision(peer, allowed):
    assert peer_allowed(peer, owner_uid=1000, socket_gid=500) is allowed


def test_supplementary_groups_are_read_from_proc_status():
    text = "Name:\tpython\nUid:\t1001\t1001\t1001\t1001\nGroups:\t4 24 500 \nNgid:\t0\n"
    assert groups_from_proc_status(text) == {4, 24, 500}
    assert groups_from_proc_status("Groups:\t\n") == frozenset()
    assert groups_from_proc_status("Name:\tx\n") == frozenset()


async def test_a_peer_of_the_same_user_is_accepted_over_a_real_socket(
    connect, nursery, target, socket_dir
):
    path = await start(nursery, target, socket_dir / "c.sock")
    client = await connect(path)
    creds = client.stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    assert int.from_bytes(creds[4:8], sys.byteorder) == os.getuid()
    assert (await client.call({"cmd": "status"}))["ok"]


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to connect as another user")
async def test_another_user_is_refused_with_an_error_line(nursery, target, socket_dir):
    path = await start(nursery, target, socket_dir / "c.sock")
    # Loosen the file modes by hand, as a careless operator might: the peer check still holds.
    os.chmod(socket_dir, 0o755)
    os.chmod(path, 0o666)
    script = textwrap.dedent(
        f"""
        import os, socket
        os.setgroups([]); os.setgid(65534); os.setuid(65534)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect({path!r})
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        print(data.decode())
        """
    )
    result = await trio.to_thread.run_sync(
        lambda: subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
        )
    )
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["ok"] is False
    assert reply["error"]["code"] == "permission_denied"
    assert reply["error"]["message"].startswith("uid 65534 may not use ")


# -- fuzzing over a real socket -------------------------------------------------------------

fuzz_lines = st.lists(
    st.one_of(
        st.binary(max_size=200),
        st.sampled_from(
            [b'{"cmd":"status"}', b'{"cmd":"opportunities","all":true}', b"{}", b"[]", b" "]
        ),
    ).map(lambda line: line.replace(b"\n", b"").removesuffix(b"\r")),
    min_size=1,
    max_size=6,
)


@settings(max_examples=40, deadline=None)
@given(fuzz_lines)
def test_fuzzed_lines_each_get_one_reply_and_the_connection_stays_open(lines):
    async def main():
        directory = tempfile.mkdtemp(prefix="arbd-fz-")
        try:
            async with trio.open_nursery() as nursery:
                path = await start(
                    nursery, FakeControlTarget({"binance": ["BTC/USDT"]}), f"{directory}/c.sock"
                )
                client = await LineClient.open(path)
                async with client.stream:
                    await client.send(b"".join(line + b"\n" for line in lines))
                    for line in lines:
                        if line.strip():
                            reply = await client.line()
                            assert set(reply) in ({"ok", "id", "result"}, {"ok", "id", "error"})
                    # Nothing more was sent for them, and the connection still answers.
                    status = await client.call({"cmd": "status", "id": "last"})
                    assert (status["id"], status["ok"]) == ("last", True)
                nursery.cancel_scope.cancel()
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    trio.run(main)


async def test_a_client_leaving_mid_write_ends_only_its_stream(
    nursery, target, socket_dir, connect
):
    path = await start(nursery, target, socket_dir / "c.sock", buffer=100_000)
    for _ in range(5):  # which of reader and writer notices first varies: try both orders
        client = await LineClient.open(path)
        assert (await client.call({"cmd": "subscribe", "channels": ["trades"]}))["ok"]
        # Far more than the socket buffers hold: the writer is blocked in send when we leave.
        target.hub.publish([trade("binance", "BTC/USDT", str(i)) for i in range(20_000)])
        await trio.sleep(0.01)
        await client.aclose()
    other = await connect(path)
    assert (await other.call({"cmd": "status"}))["ok"]  # the server (and the daemon) live on
    with trio.fail_after(5):
        while target.hub.subscribers:
            await trio.sleep(0.01)
