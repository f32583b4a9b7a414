"""`arbd demo`, the README's first command: the five fakes and the daemon, offline."""

from __future__ import annotations

import subprocess
import sys

FIVE = ("binance", "bybit", "coinbase", "kraken", "okx")


def test_demo_runs_the_five_fake_exchanges_and_reports_them_live(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "arbd", "demo", "--duration", "8"],
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
    assert "Traceback" not in result.stderr
