"""The control channel inside the daemon: `arbd start` owns its socket, and (once the daemon's
runtime API exists) every request works against the real Daemon and `arbd demo`."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest
import trio

from arbd.cli.common import load_registry
from arbd.config import Config
from arbd.daemon import Daemon
from arbd.signals import run_until_signal
from arbd.testing.control import ControlServerThread, FakeControlTarget
from arbd.testing.fake import open_fake
from arbd_simplex.fake import SimplexFake

from .conftest import LineClient

needs_runtime_api = pytest.mark.skipif(
    not hasattr(Daemon, "markets"), reason="the daemon's runtime API (ControlTarget) is not merged"
)


def test_arbd_start_refuses_the_socket_of_a_running_daemon(socket_dir):
    path = socket_dir / "arbd" / "control.sock"
    path.parent.mkdir()
    env = dict(os.environ, XDG_RUNTIME_DIR=str(socket_dir))
    env.pop("RUNTIME_DIRECTORY", None)
    with ControlServerThread(FakeControlTarget({}), str(path)):
        result = subprocess.run(
            [sys.executable, "-m", "arbd", "start"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert path.exists()  # not stolen
    assert result.returncode == 2
    assert result.stderr == (
        f"{path}: another arbd is listening on this control socket "
        "(stop it, or set control.socket to another path)\n"
    )


async def test_arbd_start_binds_its_socket_and_removes_it_on_sigterm(socket_dir):
    path = socket_dir / "control.sock"
    config = socket_dir / "arbd.toml"
    config.write_text(
        f'[server]\nenabled = false\n[metrics]\nenabled = false\n[control]\nsocket = "{path}"\n'
    )
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "arbd", "start", "--config", str(config)]
    )
    try:
        with trio.fail_after(30):
            while not path.exists():
                await trio.sleep(0.05)
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert not path.exists()


# -- against the real Daemon (after the merge) -----------------------------------------------


@needs_runtime_api
async def test_every_request_against_the_real_daemon(socket_dir, connect):
    path = socket_dir / "control.sock"
    async with open_fake(SimplexFake()) as fake:
        config = msgspec.convert(
            {
                "server": {"enabled": False},
                "metrics": {"enabled": False},
                "control": {"socket": str(path)},
                "exchanges": {
                    "simplex": {
                        "symbols": ["BTC/USDT"],
                        "ws_url": fake.ws_url(),
                        "rest_url": fake.rest_url,
                    }
                },
            },
            Config,
        )
        daemon = Daemon(config, load_registry())
        async with trio.open_nursery() as nursery:
            stopped = trio.Event()

            async def run() -> None:
                await run_until_signal(daemon)
                stopped.set()

            nursery.start_soon(run)
            with trio.fail_after(30):
                while not path.exists():
                    await trio.sleep(0.05)
                await fake.wait_connected()
            client: LineClient = await connect(str(path))

            status = await client.call({"cmd": "status", "id": 1})
            assert status["ok"], status
            [simplex] = status["result"]["exchanges"]
            assert simplex["exchange"] == "simplex"
            assert simplex["symbols"] == ["BTC/USDT"]

            assert (await client.call({"cmd": "opportunities", "all": True}))["ok"]

            # ETH/USDT is not streamed yet; once added, its data flows without a restart.
            refused = await client.call({"cmd": "subscribe", "symbols": ["ETH/USDT"]})
            assert refused["error"]["code"] == "unknown_symbol"
            added = await client.call(
                {"cmd": "symbols", "op": "add", "exchange": "simplex", "symbols": ["ETH/USDT"]}
            )
            assert added["result"]["changed"] == ["ETH/USDT"], added
            again = await client.call(
                {"cmd": "symbols", "op": "add", "exchange": "simplex", "symbols": ["ETH/USDT"]}
            )
            assert again["result"]["changed"] == []
            bogus = await client.call(
                {"cmd": "symbols", "op": "add", "exchange": "simplex", "symbols": ["NOPE/USDT"]}
            )
            assert bogus["error"]["code"] == "config_error"

            # Started without a config file: reload is refused, and the daemon carries on.
            reload = await client.call({"cmd": "reload", "id": 5})
            assert reload["error"]["code"] == "config_error"
            assert (await client.call({"cmd": "status"}))["ok"]

            stream = await connect(str(path))
            assert (
                await stream.call(
                    {"cmd": "subscribe", "symbols": ["ETH/USDT"], "channels": ["price"]}
                )
            )["ok"]
            with trio.fail_after(30):
                while True:
                    await fake.pump(1)
                    event = await stream.line()
                    if event.get("type") == "price":
                        break
            assert (event["exchange"], event["symbol"]) == ("simplex", "ETH/USDT")

            removed = await client.call(
                {"cmd": "symbols", "op": "remove", "exchange": "simplex", "symbols": ["ETH/USDT"]}
            )
            assert removed["result"]["changed"] == ["ETH/USDT"]

            assert (await client.call({"cmd": "stop", "id": 9}))["result"] == {"stopping": True}
            with trio.fail_after(10):
                await stopped.wait()
        assert not path.exists()


@needs_runtime_api
def test_arbctl_shows_live_data_from_arbd_demo(socket_dir):
    env = dict(os.environ, XDG_RUNTIME_DIR=str(socket_dir))
    env.pop("RUNTIME_DIRECTORY", None)
    arbctl = [sys.executable, "-c", "from arbd.cli.arbctl import main; main()"]
    demo = subprocess.Popen(
        [sys.executable, "-m", "arbd", "demo", "--duration", "60"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 40
        status = None
        while time.monotonic() < deadline:
            status = subprocess.run(
                [*arbctl, "status"],
                check=False,
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )
            if status.returncode == 0 and status.stdout.count(" live ") >= 5:
                break
            time.sleep(0.5)
        assert status is not None
        assert status.returncode == 0, status.stderr
        assert status.stdout.count(" live ") >= 5, status.stdout
        stream = subprocess.Popen(
            [*arbctl, "subscribe", "BTC/USDT", "-c", "price"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert stream.stdout is not None
        lines = [stream.stdout.readline() for _ in range(10)]  # the demo streams continuously
        stream.send_signal(signal.SIGINT)
        _, err = stream.communicate(timeout=20)
        assert (stream.returncode, err) == (130, "")
        # Prices of BTC/USDT from several exchanges (and a `lag` line when conflated).
        prices = [line.split() for line in lines if " price " in line]
        assert len(prices) >= 5, lines
        assert {p[3] for p in prices} == {"BTC/USDT"}
        assert len({p[2] for p in prices}) >= 2
        assert all(" price " in line or " lag " in line for line in lines), lines
        result = subprocess.run(
            [*arbctl, "opportunities", "--all"],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            _, demo_err = demo.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            demo.kill()
            _, demo_err = demo.communicate()
    assert "Traceback" not in demo_err.decode(errors="replace")
    assert not Path(socket_dir, "arbd", "control.sock").exists()
