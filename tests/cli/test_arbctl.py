"""`arbctl` against the real control server (in a thread) and a fake daemon, over a real socket."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from arbd.cli.arbctl import cli
from arbd.cli.ctlview import CHANNEL_NAMES
from arbd.errors import ConfigError
from arbd.model import (
    ALL_CHANNELS,
    Arbitrage,
    FeedStatus,
    Quote,
    Trade,
    encode_event,
)
from arbd.testing.control import ControlServerThread, FakeControlTarget
from arbd.testing.events import (
    sample_opportunity,
    sample_quote,
    sample_trade,
)

from .conftest import loaded_by_import

MARKETS = {"binance": ["BTC/USDT", "ETH/USDT"], "kraken": ["BTC/USDT"]}
LISTED = {"binance": ["BTC/USDT", "ETH/USDT", "SOL/USDT"], "kraken": ["BTC/USDT"]}
ARBCTL = [sys.executable, "-c", "from arbd.cli.arbctl import main; main()"]


def quote(exchange: str, bid: str, ask: str, symbol: str = "BTC/USDT") -> Quote:
    now = time.time_ns()
    times = {"timestamp": now // 1_000_000, "received_ns": now}
    return sample_quote(exchange, symbol, bid, ask, bid_size="1.5", ask_size="2", **times)


def trade(price: str) -> Trade:
    return sample_trade("binance", "BTC/USDT", price, size="0.25", side="sell", id="77")


def opportunity(oid: str, event: str = "open") -> Arbitrage:
    return sample_opportunity(oid, event, net=0.263, gross_spread_pct=0.47, peak_net_spread_pct=0.3)


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="arbctl-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def target() -> FakeControlTarget:
    return FakeControlTarget(MARKETS, LISTED)


@pytest.fixture
def server(target, socket_dir) -> Iterator[ControlServerThread]:
    with ControlServerThread(target, str(socket_dir / "control.sock")) as running:
        yield running


def arbctl(server: ControlServerThread, *args: str):
    return CliRunner().invoke(cli, ["--socket", server.path, *args], catch_exceptions=False)


# -- one request, one reply -------------------------------------------------------------------


def test_status_shows_a_readable_table(server):
    result = arbctl(server, "status")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("arbd 0.1.0-test  pid ")
    assert "up 1h 02m 03s" in lines[0]
    assert lines[1] == "clients 0  open opportunities 0"
    header = lines[3].split()
    assert header[:3] == ["EXCHANGE", "STATE", "CONN"]
    rows = [line.split() for line in lines[4:]]
    assert [(r[0], r[1], r[2], r[3], r[-1]) for r in rows] == [
        ("binance", "live", "1/1", "12.5", "2"),
        ("kraken", "live", "1/1", "12.5", "1"),
    ]
    # Aligned: every row of the table is as long as the header or shorter, columns line up.
    assert lines[4].index("live") == lines[3].index("STATE")


def test_status_json_is_the_daemons_status(server, target):
    result = arbctl(server, "status", "--json")
    assert result.exit_code == 0
    assert json.loads(result.output) == json.loads(msgspec.json.encode(target.status()))


def test_opportunities_table_json_and_all(server):
    server.publish([opportunity("aaa"), opportunity("bbb"), opportunity("aaa", "close")])
    result = arbctl(server, "opportunities")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["ID", "STATE", "SYMBOL"]
    assert len(lines) == 2
    assert lines[1].split()[:3] == ["bbb", "open", "BTC/USDT"]
    assert "+0.263 %" in lines[1]
    assert "114.44 USDT" in lines[1]
    everything = arbctl(server, "opportunities", "--all").output.splitlines()
    assert [line.split()[0] for line in everything[1:]] == ["aaa", "bbb"]
    assert everything[1].endswith("spread")
    as_json = json.loads(arbctl(server, "opportunities", "--json", "--all").output)
    assert [(o["id"], o["event"]) for o in as_json] == [("aaa", "close"), ("bbb", "open")]


def test_no_opportunities_says_so(server):
    assert arbctl(server, "opportunities").output == "no open opportunities\n"


def test_symbols_add_and_remove(server, target):
    result = arbctl(server, "symbols", "add", "binance", "sol/usdt", "BTC/USDT")
    assert result.exit_code == 0
    assert result.output == (
        "binance: subscribed SOL/USDT\nbinance: already subscribed: BTC/USDT\n"
    )
    assert server.call(target.markets)["binance"] == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    result = arbctl(server, "symbols", "remove", "binance", "ETH/USDT")
    assert result.output == "binance: unsubscribed ETH/USDT\n"


def test_a_refused_symbol_is_one_line_and_exit_code_2(server):
    result = arbctl(server, "symbols", "add", "binance", "SOL/USDC")
    assert result.exit_code == 2
    assert result.output == "arbctl: binance does not list SOL/USDC; did you mean SOL/USDT?\n"
    result = arbctl(server, "symbols", "add", "binance", "not-a-symbol")
    assert result.exit_code == 2
    assert "is not a BASE/QUOTE symbol" in result.output


def test_reload_prints_changes_or_the_error(server, target):
    target.reload_changes = ["binance: +SOL/USDT"]
    result = arbctl(server, "reload")
    assert (result.exit_code, result.output) == (0, "binance: +SOL/USDT\n")
    target.reload_changes = []
    assert arbctl(server, "reload").output == "reloaded: no changes\n"
    target.reload_error = ConfigError("unknown key", path="/etc/arbd.toml", key="server.prot")
    result = arbctl(server, "reload")
    assert result.exit_code == 2
    assert result.output == "arbctl: /etc/arbd.toml: server.prot: unknown key\n"


def test_stop_asks_the_daemon_to_stop(server, target):
    result = arbctl(server, "stop")
    assert (result.exit_code, result.output) == (0, "arbd is stopping\n")
    deadline = time.monotonic() + 5  # the server asks right after its reply went out
    while server.call(lambda: target.stops) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.call(lambda: target.stops) == 1


# -- finding the daemon -----------------------------------------------------------------------


def test_daemon_not_running_is_one_line_and_exit_code_1(socket_dir):
    missing = socket_dir / "nothing.sock"
    result = CliRunner().invoke(cli, ["--socket", str(missing), "status"])
    assert result.exit_code == 1
    assert result.output == (
        f"arbctl: arbd is not running (looked for its control socket at {missing} "
        "(--socket: missing))\n"
    )


def test_without_options_arbctl_looks_in_every_standard_place(socket_dir, monkeypatch):
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(socket_dir / "rt"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(socket_dir / "xdg"))
    result = CliRunner().invoke(cli, ["status"])
    assert result.exit_code == 1
    message = result.output
    assert message.count("\n") == 1
    for where in (
        f"{socket_dir}/rt/control.sock ($RUNTIME_DIRECTORY: missing)",
        f"{socket_dir}/xdg/arbd/control.sock ($XDG_RUNTIME_DIR: missing)",
        "/run/arbd/control.sock (systemd default: ",
        f"/tmp/arbd-{os.getuid()}/control.sock (fallback: ",
    ):
        assert where in message


def test_a_daemon_in_the_xdg_runtime_dir_is_found(target, socket_dir, monkeypatch):
    path = socket_dir / "arbd" / "control.sock"
    path.parent.mkdir()
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(socket_dir))
    with ControlServerThread(target, str(path)):
        result = CliRunner().invoke(cli, ["status"])
    assert result.exit_code == 0, result.output


def test_a_stale_socket_means_not_running(socket_dir):
    path = socket_dir / "control.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()
    result = CliRunner().invoke(cli, ["--socket", str(path), "status"])
    assert result.exit_code == 1
    assert "(--socket: refused: a stale socket)" in result.output


def test_config_names_the_socket(server, socket_dir):
    config = socket_dir / "arbd.toml"
    config.write_text(f'[control]\nsocket = "{server.path}"\n[exchanges.binance]\n')
    result = CliRunner().invoke(cli, ["--config", str(config), "status"])
    assert result.exit_code == 0, result.output
    config.write_text("[control\n")
    result = CliRunner().invoke(cli, ["--config", str(config), "status"])
    assert result.exit_code == 2
    assert result.output.startswith(f"arbctl: {config}: invalid TOML: ")
    assert result.output.count("\n") == 1


# -- subscribe --------------------------------------------------------------------------------


class Process:
    """An arbctl subprocess whose stdout is read with deadlines."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*ARBCTL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.out = b""

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        """Read stdout until ``text`` appears; returns everything read so far."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            while text.encode() not in self.out:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    raise AssertionError(f"no {text!r} within {timeout}s; got {self.out!r}")
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    raise AssertionError(f"stdout closed before {text!r}; got {self.out!r}")
                self.out += chunk
        return self.out.decode()

    def interrupt(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        return self.finish()

    def finish(self) -> tuple[int, str]:
        rest, err = self.proc.communicate(timeout=20)
        self.out += rest
        return self.proc.returncode, err.decode()


def test_subscribe_streams_state_then_events_and_ctrl_c_exits_quietly(server):
    server.publish([quote("binance", "64000.10", "64000.20"), quote("kraken", "64100", "64101")])
    proc = Process("--socket", server.path, "subscribe", "BTC/USDT", "-e", "binance")
    proc.wait_for("bid 64000.10 x 1.5  ask 64000.20 x 2")
    server.publish([trade("64000.15"), quote("kraken", "1", "2")])
    out = proc.wait_for("sell 0.25 @ 64000.15")
    assert "kraken" not in out  # filtered out by -e binance
    code, err = proc.interrupt()
    assert code == 130
    assert err == ""


def test_subscribe_json_prints_the_events_as_sent(server):
    first = quote("binance", "64000.10", "64000.20")
    server.publish([first])
    proc = Process("--socket", server.path, "subscribe", "-c", "price", "-c", "trades", "--json")
    proc.wait_for("64000.20")
    server.publish([trade("64000.15"), opportunity("x")])  # the opportunity is filtered out
    proc.wait_for('"price":"64000.15"')
    code, err = proc.interrupt()
    assert (code, err) == (130, "")
    assert proc.out.splitlines() == [encode_event(first), encode_event(trade("64000.15"))]


def test_subscribe_ends_with_a_message_when_the_daemon_goes_away(target, socket_dir):
    running = ControlServerThread(target, str(socket_dir / "control.sock"))
    with running:
        proc = Process("--socket", running.path, "subscribe", "-c", "status")
        running.publish(
            [
                FeedStatus(
                    exchange="binance",
                    symbol="",
                    scope="connection",
                    state="live",
                    connection="binance-1",
                    timestamp=1_700_000_000_000,
                )
            ]
        )
        proc.wait_for("connection binance-1: live")
    code, err = proc.finish()
    assert code == 1
    assert err == "arbctl: arbd closed the connection\n"


def test_subscribe_top_prints_a_table_per_second_when_not_a_tty(server):
    server.publish(
        [
            quote("binance", "64000.10", "64000.20"),
            quote("kraken", "64100.00", "64100.50"),
            opportunity("o1"),
        ]
    )
    proc = Process("--socket", server.path, "subscribe", "BTC/USDT", "--top")
    out = proc.wait_for("best net spread")
    code, err = proc.interrupt()
    assert (code, err) == (130, "")
    assert "\x1b[" not in out  # no cursor movement into a pipe
    lines = out.splitlines()
    assert "BTC/USDT" in lines
    binance = next(line for line in lines if line.split()[:1] == ["binance"])
    assert binance.split()[1:3] == ["64000.10", "64000.20"]
    assert "best gross spread +0.156 %  (buy binance, sell kraken; before fees)" in out
    assert "best net spread +0.263 %  (buy binance, sell kraken;" in out


def test_top_does_not_combine_with_channels_or_json(server):
    result = CliRunner().invoke(cli, ["--socket", server.path, "subscribe", "--top", "--json"])
    assert result.exit_code == 2
    assert "--top" in result.output


# -- start-up ---------------------------------------------------------------------------------


def test_arbctl_imports_no_heavy_modules():
    heavy = ("trio", "msgspec", "pluggy", "httpx", "arbd.model", "arbd.hub", "importlib.metadata")
    assert loaded_by_import("arbd.cli.arbctl", heavy) == []


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("arbctl, version ")


def test_the_channel_choices_are_the_models_channels():
    assert CHANNEL_NAMES == ALL_CHANNELS
