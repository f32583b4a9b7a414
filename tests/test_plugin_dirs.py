"""Third-party plugins from a directory (``pip install --target DIR``), as the single binary
loads them: ``daemon.plugin_dirs`` and ``$ARBD_PLUGIN_PATH``."""

import sys
import textwrap

import pytest

from arbd.plugins import load_plugins

PLUGIN = """
import msgspec
from arbd import hookimpl
from arbd_simplex.adapter import SimplexAdapter


class DirAdapter(SimplexAdapter):
    spec = msgspec.structs.replace(SimplexAdapter.spec, id="{exchange}", name="From a directory")


@hookimpl
def arbd_exchanges():
    return [DirAdapter]
"""


def install(target, module: str, exchange: str) -> None:
    """What ``pip install --target`` leaves: the module and its dist-info with entry points."""
    (target / f"{module}.py").write_text(textwrap.dedent(PLUGIN.format(exchange=exchange)))
    info = target / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[arbd]\n{exchange} = {module}\n")


@pytest.fixture
def clean_path(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))


def test_a_plugin_directory_adds_its_exchanges(tmp_path, clean_path):
    install(tmp_path, "arbd_dirplugin_one", "dirone")
    registry = load_plugins(plugin_dirs=[str(tmp_path), str(tmp_path / "missing")])
    assert "dirone" in registry.exchanges
    assert {p.name: p.version for p in registry.plugins}["dirone"] == "1.0"
    assert "binance" in registry.exchanges  # the built-ins are still there


def test_the_environment_names_plugin_directories_too(tmp_path, clean_path):
    install(tmp_path, "arbd_dirplugin_two", "dirtwo")
    registry = load_plugins(env={"ARBD_PLUGIN_PATH": f"/nonexistent:{tmp_path}"})
    assert "dirtwo" in registry.exchanges


def test_without_the_directory_the_plugin_is_not_there(tmp_path, clean_path):
    install(tmp_path, "arbd_dirplugin_three", "dirthree")
    assert "dirthree" not in load_plugins(env={}).exchanges
