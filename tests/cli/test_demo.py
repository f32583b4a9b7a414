"""`arbd demo`, the README's first command: the five fakes and the daemon, offline."""

from __future__ import annotations

import io
import subprocess
import sys

import msgspec

from arbd.cli.common import load_registry
from arbd.model import Arbitrage, Event
from arbd.replay import replay

FIVE = ("binance", "bybit", "coinbase", "kraken", "okx")


def test_demo_runs_the_five_fake_exchanges_and_finds_opportunities(tmp_path):
    record = tmp_path / "captures"
    result = subprocess.run(
        [sys.executable, "-m", "arbd", "demo", "--duration", "8", "--record", str(record)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    for exchange in FIVE:
        assert f"fake {exchange}" in out  # where each fake listens
        assert any(
            line.startswith(exchange) and " live " in line and "no quote" not in line
            for line in out.splitlines()
        ), out
    assert "fake simplex" not in out  # the reference plugin is off unless configured
    assert "local WebSocket server ws://127.0.0.1:" in out  # where programs connect
    assert "Traceback" not in result.stderr
    # The simulator's dislocations open opportunities, printed as they open and close.
    assert "arbitrage open " in out, out
    assert "arbitrage close " in out, out

    # The recording, replayed, shows them too: the same engine runs in `arbd replay`.
    captures = sorted(record.glob("*.jsonl.gz"))
    assert [p.name.split(".")[0] for p in captures] == sorted(FIVE)
    output = io.BytesIO()
    replay(captures, load_registry(), output, err=io.StringIO())
    events = [msgspec.json.decode(line, type=Event) for line in output.getvalue().splitlines()]
    found = [e for e in events if isinstance(e, Arbitrage)]
    assert any(e.event == "open" for e in found)
    # Every opportunity that opens also closes (at the latest when the replay ends).
    opened = {e.id for e in found if e.event == "open"}
    assert opened == {e.id for e in found if e.event == "close"}
