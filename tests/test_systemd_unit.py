"""The shipped unit file: the settings the daemon relies on, and its measured exposure."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "arbd.service"


def service_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_the_unit_runs_arbd_as_a_notify_service_with_watchdog_and_reload():
    s = service_settings()
    assert s["Type"] == ["notify"]
    assert s["NotifyAccess"] == ["main"]
    assert int(s["WatchdogSec"][0]) > 0
    assert "arbd start" in s["ExecStart"][0]
    assert "-HUP $MAINPID" in s["ExecReload"][0]
    assert s["RuntimeDirectory"] == ["arbd"]
    assert s["StateDirectory"] == ["arbd"]
    assert s["ConfigurationDirectory"] == ["arbd"]
    assert s["User"] == ["arbd"]
    assert s["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    for hardening in ("ProtectSystem", "ProtectHome", "PrivateTmp", "NoNewPrivileges"):
        assert hardening in s
    assert "@system-service" in s["SystemCallFilter"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_rates_the_unit_exposure_at_most_2():
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for arbd\.service: ([0-9.]+)", result.stdout)
    if found is None:
        pytest.skip(f"systemd-analyze gave no rating here: {result.stderr.strip()[:200]}")
    assert float(found.group(1)) <= 2.0
