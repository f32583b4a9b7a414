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


def test_a_scrape_during_the_demo_carries_every_exchange(tmp_path):
    """/metrics of a running `arbd demo` parses with prometheus-client's parser and has data
    from all five exchanges; /health answers."""
    import signal
    import time

    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    demo = subprocess.Popen(
        [sys.executable, "-m", "arbd", "demo", "--duration", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert demo.stdout is not None
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = demo.stdout.readline()
            if line.startswith("metrics http://"):
                url = line.split()[1].removesuffix("/metrics")
        assert url is not None, "the demo never printed its metrics address"
        values: dict[tuple[str, str], float] = {}
        while time.monotonic() < deadline:
            text = httpx.get(f"{url}/metrics", timeout=10).text
            values.clear()
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    key = (sample.name, sample.labels.get("exchange", ""))
                    values[key] = values.get(key, 0.0) + sample.value
            if all(values.get(("arbd_books", ex), 0) > 0 for ex in FIVE):
                break
            time.sleep(0.5)
        for exchange in FIVE:
            assert values[("arbd_messages_received_total", exchange)] > 0
            assert values[("arbd_events_total", exchange)] > 0
            assert values[("arbd_ingest_latency_seconds_count", exchange)] > 0
            assert values[("arbd_books", exchange)] > 0
        assert values[("arbd_hub_published_events_total", "")] > 0
        assert values[("arbd_process_resident_memory_bytes", "")] > 0
        health = httpx.get(f"{url}/health", timeout=10)
        assert health.status_code == 200
        assert health.json()["status"] in ("ok", "degraded")
        assert set(health.json()["exchanges"]) == set(FIVE)
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=30)
        if demo.stdout is not None:
            demo.stdout.close()
