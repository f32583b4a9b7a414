"""`arbd config init` and `arbd config check`: defaults that check clean, one-line errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from arbd.cli.main import cli, default_config
from arbd.config import ServerConfig, config_to_dict, load_config
from arbd.plugins import load_plugins

from .conftest import loaded_by_import


@pytest.fixture(autouse=True)
def only_simplex(monkeypatch: pytest.MonkeyPatch) -> None:
    # The installed plugin set is whatever the venv holds; pin it so expectations are exact.
    monkeypatch.setenv("ARBD_LOAD_PLUGINS", "simplex")


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_error(code: int, stderr: str, expected: str) -> None:
    assert code == 2
    assert stderr.count("\n") == 1, stderr
    assert stderr == expected + "\n"
    assert "Traceback" not in stderr


def test_init_then_check_passes(tmp_path: Path) -> None:
    path = tmp_path / "arbd.toml"
    code, _, stderr = run("config", "init", str(path))
    assert (code, stderr) == (0, f"{path}: written\n")
    code, stdout, stderr = run("config", "check", str(path))
    assert (code, stdout, stderr) == (0, f"{path}: ok\n", "")

    config = load_config(path)
    simplex = config.exchanges["simplex"]
    spec = load_plugins().adapter_class("simplex").spec
    assert simplex.enabled == spec.enabled_by_default
    assert simplex.symbols == list(spec.default_symbols)
    assert simplex.channels == list(spec.channels)
    assert simplex.book_depth == 20
    # Complete: every default is spelled out (None-valued optional keys are left out).
    written = tomllib.loads(path.read_text())
    assert written == config_to_dict(default_config(load_plugins()))
    assert set(written["server"]) == {f.name for f in msgspec.structs.fields(ServerConfig)}
    assert "taker_fee_pct" not in written["exchanges"]["simplex"]


def test_init_defaults_to_arbd_toml_and_dash_is_stdout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli, ["config", "init"])
    assert result.exit_code == 0
    written = (tmp_path / "arbd.toml").read_text()
    result = runner.invoke(cli, ["config", "init", "-"])
    assert result.exit_code == 0
    assert result.stdout == written
    assert result.stderr == ""


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    path = tmp_path / "arbd.toml"
    path.write_text("# mine\n")
    code, _, stderr = run("config", "init", str(path))
    assert_one_line_error(code, stderr, f"{path}: already exists (use --force to overwrite)")
    assert path.read_text() == "# mine\n"
    code, _, _ = run("config", "init", "--force", str(path))
    assert code == 0
    assert "[exchanges.simplex]" in path.read_text()


def test_misspelt_key_is_one_line_naming_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "arbd.toml"
    path.write_text("[server]\nprot = 9000\n")
    code, stdout, stderr = run("config", "check", str(path))
    assert stdout == ""
    assert_one_line_error(code, stderr, f"{path}: server.prot: unknown key")


def test_wrong_type_is_one_line_naming_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "arbd.toml"
    path.write_text('[exchanges.simplex]\nbook_depth = "deep"\n')
    code, _, stderr = run("config", "check", str(path))
    assert_one_line_error(
        code, stderr, f"{path}: exchanges.simplex.book_depth: expected int, got str"
    )


def test_unknown_exchange_names_the_installed_ones(tmp_path: Path) -> None:
    path = tmp_path / "arbd.toml"
    path.write_text('[exchanges.simplx]\nsymbols = ["BTC/USDT"]\n')
    code, _, stderr = run("config", "check", str(path))
    assert_one_line_error(
        code,
        stderr,
        f"{path}: exchanges.simplx: unknown exchange 'simplx' "
        "(installed: simplex; did you mean simplex?)",
    )
    path.write_text("[exchanges.zzz]\n")
    code, _, stderr = run("config", "check", str(path))
    assert_one_line_error(
        code, stderr, f"{path}: exchanges.zzz: unknown exchange 'zzz' (installed: simplex)"
    )


def test_unreadable_and_invalid_files_are_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    code, _, stderr = run("config", "check", str(missing))
    assert_one_line_error(code, stderr, f"{missing}: cannot read: No such file or directory")
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\nport = 1\n")
    code, _, stderr = run("config", "check", str(bad))
    assert code == 2
    assert stderr.startswith(f"{bad}: invalid TOML: ")
    assert stderr.count("\n") == 1


def test_usage_errors_are_one_line() -> None:
    code, _, stderr = run("config", "check")
    assert_one_line_error(
        code,
        stderr,
        "arbd config check: Missing argument 'PATH'. (see 'arbd config check --help')",
    )
    code, _, stderr = run("confg")
    assert code == 2
    assert stderr.startswith("arbd: No such command 'confg'.")
    assert stderr.count("\n") == 1


def test_version() -> None:
    code, stdout, _ = run("--version")
    assert code == 0
    assert stdout.startswith("arbd, version ")


def test_arbd_help_does_not_import_the_daemon():
    """`arbd --help` and the config commands must not load trio, the feeds or the engine."""
    daemon = ("trio", "httpx", "websockets", "arbd.daemon", "arbd.hub", "arbd.arbitrage.engine")
    assert loaded_by_import("arbd.cli.main", (*daemon, "arbd.feed.connection")) == []
