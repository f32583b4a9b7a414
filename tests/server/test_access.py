"""Who may connect, and the [server] config rules, as plain values; and the refusal to start."""

from __future__ import annotations

import logging
import socket
from functools import partial

import pytest
import trio

from arbd.config import ServerConfig, is_loopback_host, parse_config
from arbd.errors import ConfigError
from arbd.hub import Hub
from arbd.server.access import RateLimit, check_handshake, presented_token
from arbd.server.ws import serve_websocket

TOKEN = "0123456789abcdef-token"


def headers(**values: str):
    named = {k.replace("_", "-").lower(): v for k, v in values.items()}
    return lambda name: named.get(name.lower())


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("", False),
        ("::", False),
        ("192.168.1.20", False),
        ("arbd.internal", False),
    ],
)
def test_loopback_hosts(host, loopback):
    assert is_loopback_host(host) is loopback


def test_a_non_loopback_host_without_a_token_is_refused_at_config_time():
    with pytest.raises(ConfigError) as info:
        parse_config({"server": {"host": "0.0.0.0"}}, "arbd.toml")
    assert str(info.value) == (
        "arbd.toml: server.token: required when server.host (0.0.0.0) is not a loopback address"
    )
    parse_config({"server": {"host": "0.0.0.0", "token": TOKEN}})  # fine with one


@pytest.mark.parametrize(
    ("server", "key", "problem"),
    [
        ({"token": "short"}, "server.token", "must be at least 16 ASCII characters"),
        ({"token": "has a space in it!!"}, "server.token", "must not contain spaces"),
        ({"allowed_origins": ["dash.example"]}, "server.allowed_origins[0]", "is not an origin"),
        ({"max_clients": 0}, "server.max_clients", "must be at least 1"),
        ({"buffer": 0}, "server.buffer", "must be at least 1"),
        ({"max_message_bytes": 10}, "server.max_message_bytes", "must be at least 256"),
        ({"max_messages_per_s": 0}, "server.max_messages_per_s", "must be greater than 0"),
        ({"slow_deadline": -1}, "server.slow_deadline", "must be greater than 0"),
        ({"slow_policy": "panic"}, "server.slow_policy", "Invalid enum value 'panic'"),
    ],
)
def test_server_settings_are_checked_with_their_key_path(server, key, problem):
    with pytest.raises(ConfigError) as info:
        parse_config({"server": server}, "arbd.toml")
    assert info.value.key == key
    assert problem in info.value.problem


async def test_the_server_refuses_to_start_on_a_public_address_without_a_token():
    # A Config built in code skips the file checks; the server checks again before listening.
    config = ServerConfig(host="0.0.0.0", port=0)
    with pytest.raises(ConfigError) as info:
        await serve_websocket(config, Hub(), dict)
    assert info.value.key == "server.token"


async def test_a_port_in_use_is_a_config_error_naming_server_port():
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    try:
        async with trio.open_nursery() as nursery:
            with pytest.raises(ConfigError) as info:
                await nursery.start(partial(serve_websocket, ServerConfig(port=port), Hub(), dict))
    finally:
        await listeners[0].aclose()
    assert info.value.key == "server.port"
    assert f"cannot listen on 127.0.0.1:{port}" in info.value.problem


def test_the_token_comes_from_the_authorization_header_or_the_query():
    assert presented_token("/ws", headers(Authorization=f"Bearer {TOKEN}")) == TOKEN
    assert presented_token("/ws", headers(Authorization=f"bearer   {TOKEN} ")) == TOKEN
    assert presented_token(f"/ws?x=1&token={TOKEN}", headers()) == TOKEN
    assert presented_token("/ws", headers(Authorization=f"Basic {TOKEN}")) is None
    assert presented_token("/ws", headers()) is None


def test_handshake_checks_path_token_and_origin():
    open_config = ServerConfig()
    assert check_handshake(open_config, "/ws", headers()) is None
    assert check_handshake(open_config, "/ws?anything=1", headers()) is None
    refusal = check_handshake(open_config, "/other", headers())
    assert refusal is not None
    assert refusal.status == 404

    locked = ServerConfig(token=TOKEN, allowed_origins=["https://dash.example"])
    ok = headers(Authorization=f"Bearer {TOKEN}")
    assert check_handshake(locked, "/ws", ok) is None
    missing = check_handshake(locked, "/ws", headers())
    wrong = check_handshake(locked, f"/ws?token={TOKEN}x", headers())
    assert missing is not None and missing.status == 401 and "missing token" in missing.reason
    assert wrong is not None and wrong.status == 401 and "wrong token" in wrong.reason
    evil = check_handshake(
        locked, "/ws", headers(Authorization=f"Bearer {TOKEN}", Origin="https://evil.example")
    )
    assert evil is not None and evil.status == 403
    good = headers(Authorization=f"Bearer {TOKEN}", Origin="https://dash.example")
    assert check_handshake(locked, "/ws", good) is None
    # Without the token, a listed Origin does not help.
    no_token = check_handshake(locked, "/ws", headers(Origin="https://dash.example"))
    assert no_token is not None and no_token.status == 401


def test_rate_limit_allows_bursts_then_refuses_and_marks_abuse():
    limit = RateLimit(5.0, now=0.0)
    assert [limit.allow(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert not limit.abusive
    assert limit.allow(0.2)  # one token back after 0.2 s
    for _ in range(10):
        limit.allow(0.2)
    assert limit.abusive
    # Strikes fade: after a quiet spell the client is welcome again.
    assert limit.allow(20.0)
    assert not limit.abusive
    assert limit.refused == 11


@pytest.fixture
def keep_logging():
    """`arbd start` sets up logging on the root logger; put it back for the other tests."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("keep_logging")
def test_arbd_start_refuses_unsafe_or_busy_server_settings_in_one_line(tmp_path):
    from click.testing import CliRunner

    from arbd.cli.main import cli

    public = tmp_path / "public.toml"
    public.write_text('[server]\nhost = "0.0.0.0"\n')
    result = CliRunner().invoke(cli, ["start", "--config", str(public)])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"{public}: server.token: required when server.host (0.0.0.0) is not a loopback address"
    )

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = tmp_path / "busy.toml"
        busy.write_text(f"[server]\nport = {port}\n[metrics]\nenabled = false\n")
        result = CliRunner().invoke(cli, ["start", "--config", str(busy)])
    assert result.exit_code == 2
    # The last line (before it, log lines of what had started: the control socket).
    assert result.output.strip().splitlines()[-1] == (
        f"server.port: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
