"""The daemon as a user runs it: a real `arbd` process against the simplex fake on loopback."""

from __future__ import annotations

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
