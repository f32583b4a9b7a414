"""`arbd plugins`: installed plugins, their exchanges and channels, and failed plugins."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from arbd.cli.arbctl import cli as arbctl
from arbd.cli.main import cli
from arbd.plugins import load_plugins


@pytest.fixture
def broken_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real installed distribution whose plugin module fails to import."""
    info = tmp_path / "tplugcli_broken-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tplugcli-broken\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[arbd]\ntbroken = tplugcli_broken\n")
    (tmp_path / "tplugcli_broken.py").write_text('raise ImportError("needs libfoo")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield "tbroken"
    sys.modules.pop("tplugcli_broken", None)
    importlib.invalidate_caches()


def test_plugins_json_lists_simplex_with_its_channels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARBD_LOAD_PLUGINS", "simplex")
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    spec = load_plugins().adapter_class("simplex").spec
    assert len(rows) == 1
    row = rows[0]
    assert row["name"] == "simplex"
    assert row["exchanges"] == ["simplex"]
    assert row["channels"] == {"simplex": list(spec.channels)}
    assert set(spec.channels) == {"price", "trades", "book", "candles"}
    assert row["fakes"] == ["simplex"]
    assert row["error"] is None
    assert row["version"]


def test_plugins_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARBD_LOAD_PLUGINS", "simplex")
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["PLUGIN", "VERSION", "EXCHANGE", "CHANNELS"]
    assert len(rows) == 1
    name, _version, exchange, channels = rows[0].split()
    assert (name, exchange) == ("simplex", "simplex")
    assert set(channels.split(",")) == {"price", "trades", "book", "candles"}


def test_failed_plugin_is_listed_and_warned_about(
    broken_plugin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARBD_LOAD_PLUGINS", f"simplex,{broken_plugin}")
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["simplex"]["error"] is None
    assert rows["tbroken"]["error"] == "ImportError: needs libfoo"
    assert rows["tbroken"]["exchanges"] == []
    assert result.stderr == "warning: plugin 'tbroken' skipped: ImportError: needs libfoo\n"

    table = CliRunner().invoke(cli, ["plugins"])
    broken = [line for line in table.stdout.splitlines() if line.startswith("tbroken")]
    assert [line.split(None, 3) for line in broken] == [
        ["tbroken", "1.0", "-", "FAILED: ImportError: needs libfoo"]
    ]

    # Every command that loads plugins warns, and still works with the good ones.
    init = CliRunner().invoke(cli, ["config", "init", "-"])
    assert init.exit_code == 0
    assert "[exchanges.simplex]" in init.stdout
    assert init.stderr == "warning: plugin 'tbroken' skipped: ImportError: needs libfoo\n"


def test_no_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARBD_LOAD_PLUGINS", "")
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert (result.exit_code, json.loads(result.stdout)) == (0, [])
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.stdout == "no plugins installed\n"


def test_arbctl_version_and_one_line_usage_errors() -> None:
    result = CliRunner().invoke(arbctl, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("arbctl, version ")
    result = CliRunner().invoke(arbctl, ["statsu"])
    assert result.exit_code == 2
    assert result.stderr.startswith("arbctl: No such command 'statsu'.")
