"""The daemon as a user runs it: a real `arbd` process against the simplex fake on loopback."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import trio

from arbd.testing.fake import open_fake
from arbd_simplex.fake import SimplexFake

SUBS = {"price:BTC-USDT", "trades:BTC-USDT", "book:BTC-USDT", "candles:BTC-USDT"}


def write_config(path: Path, fake: SimplexFake) -> Path:
    path.write_text(
        "[server]\nenabled = false\n[metrics]\nenabled = false\n"
        "[exchanges.simplex]\n"
        'symbols = ["BTC/USDT"]\n'
        f'ws_url = "{fake.ws_url()}"\n'
        f'rest_url = "{fake.rest_url}"\n'
    )
    return path


async def test_sigterm_closes_connections_with_1000_and_exits_within_2s(tmp_path):
    async with open_fake(SimplexFake()) as fake:
        config = write_config(tmp_path / "arbd.toml", fake)
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "arbd", "start", "--config", str(config)],
            stderr=subprocess.PIPE,
        )
        try:
            with trio.fail_after(30):
                conn = await fake.wait_connected()
                await fake.wait_for(lambda: conn.subscriptions >= SUBS)
            await fake.pump(2)
            process.send_signal(signal.SIGTERM)
            # The spec: a clean exit within 2 s of SIGTERM.
            with trio.fail_after(2.0):
                code = await process.wait()
                await fake.wait_for(lambda: conn.closed)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert code == 0
        assert conn.close_code == 1000
        stderr = await _read_all(process)
        assert "Traceback" not in stderr


async def _read_all(process: trio.Process) -> str:
    assert process.stderr is not None
    chunks = []
    while data := await process.stderr.receive_some(65536):
        chunks.append(data)
    return b"".join(chunks).decode(errors="replace")


async def test_record_then_replay_gives_the_events_published_live(tmp_path):
    """`arbd record` against the fake, then `arbd replay` of that capture: the same events."""
    from arbd.capture import CaptureWriter
    from arbd.config import Config, ExchangeConfig
    from arbd.daemon import Daemon
    from arbd.plugins import load_plugins
    from arbd.replay import replay

    registry = load_plugins(env={"ARBD_LOAD_PLUGINS": "simplex"})
    capture = tmp_path / "simplex.capture.jsonl.gz"
    async with open_fake(SimplexFake()) as fake:
        config = Config(
            exchanges={
                "simplex": ExchangeConfig(
                    symbols=["BTC/USDT", "ETH/USDT"], ws_url=fake.ws_url(), rest_url=fake.rest_url
                )
            }
        )
        with CaptureWriter(capture, exchange="simplex") as writer:
            daemon = Daemon(config, registry, recorder=writer)
            live = daemon.hub.subscribe(capacity=100_000, policy="drop_oldest")
            async with trio.open_nursery() as nursery:
                await nursery.start(daemon.run)
                with trio.fail_after(30):
                    conn = await fake.wait_connected()
                    await fake.wait_for(lambda: len(conn.subscriptions) >= 8)
                await fake.pump(20)
                fake.skip_sequence("BTC/USDT")  # a gap: invalid, resync, valid again
                await fake.pump(5)
                with trio.fail_after(10):
                    while daemon.hub.state.book_state.get(("simplex", "BTC/USDT")) != "valid":
                        await trio.sleep(0.05)
                await fake.pump(5)
                await trio.sleep(0.5)
                nursery.cancel_scope.cancel()
    # Connection-state events come from the supervisor, not the adapter; the rest must match.
    published = [e for e in live.drain() if getattr(e, "scope", "book") == "book"]
    assert any(getattr(e, "state", "") == "invalid" for e in published)

    out_a, out_b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    with out_a.open("wb") as fa:
        replay([capture], registry, fa)
    with out_b.open("wb") as fb:
        replay([capture], registry, fb)
    assert out_a.read_bytes() == out_b.read_bytes()
    replayed = [json.loads(line) for line in out_a.read_bytes().splitlines()]
    from arbd.model import encode_event

    live_json = [json.loads(encode_event(e)) for e in published]
    assert len(live_json) > 50
    for i, (r, l) in enumerate(zip(replayed, live_json, strict=False)):
        assert r == l, (
            i,
            {k: (r.get(k), l.get(k)) for k in set(r) | set(l) if r.get(k) != l.get(k)},
        )
    assert replayed == live_json
