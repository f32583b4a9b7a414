"""Plugin discovery through real entry points of real (temporary) distributions.

Each test writes ``<name>-1.0.dist-info`` directories and plugin modules into ``tmp_path`` and
puts it on ``sys.path``, so ``importlib.metadata`` finds them exactly as it finds an installed
third-party plugin. ``ARBD_LOAD_PLUGINS`` keeps the project's own plugins out of the picture.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from arbd.plugins import load_plugins

ADAPTER = textwrap.dedent(
    """
    from arbd.exchange.adapter import ExchangeAdapter, ExchangeSession, ExchangeSpec
    from arbd.hookspecs import hookimpl


    class _Session(ExchangeSession):
        def start(self, now_ns):
            pass

        def receive(self, data, is_text, received_ns, out):
            pass

        def resubscribe(self, subscriptions, now_ns):
            pass


    def make_adapter(exchange_id):
        class Adapter(ExchangeAdapter):
            spec = ExchangeSpec(
                id=exchange_id,
                name=exchange_id.title(),
                ws_url="wss://example.invalid/ws",
                rest_url="https://example.invalid",
                channels=("price", "book"),
            )

            def instrument_requests(self):
                return []

            def load_instruments(self, responses):
                pass

            def new_session(self, plan):
                return _Session(self, plan)

        return Adapter
    """
)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path for fake distributions; modules imported from it are forgotten."""
    before = set(sys.modules)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("tplug_"):
            del sys.modules[name]
    importlib.invalidate_caches()


def distribution(
    site: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str]
) -> None:
    """Write an installed distribution: dist-info (METADATA, entry_points.txt) and its modules."""
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[arbd]\n{lines}")
    for module, source in modules.items():
        (site / f"{module}.py").write_text(source)
    importlib.invalidate_caches()


def plugin_module(body: str) -> str:
    return "from tplug_common import make_adapter, hookimpl\n\n" + textwrap.dedent(body)


GOOD = plugin_module(
    """
    @hookimpl
    def arbd_exchanges():
        return [make_adapter("goodex")]
    """
)


def test_entry_point_discovery_loads_a_distribution(site: Path) -> None:
    distribution(
        site, "tplug-good", {"tgood": "tplug_good"}, {"tplug_common": ADAPTER, "tplug_good": GOOD}
    )
    registry = load_plugins(env={"ARBD_LOAD_PLUGINS": "tgood"})
    assert registry.failed == []
    assert [(p.name, p.version, p.exchanges) for p in registry.plugins] == [
        ("tgood", "1.0", ["goodex"])
    ]
    assert registry.plugins[0].channels == {"goodex": ["price", "book"]}
    assert registry.adapter_class("goodex").spec.name == "Goodex"


def test_broken_plugins_are_reported_by_name_and_skipped(site: Path) -> None:
    modules = {
        "tplug_common": ADAPTER,
        "tplug_good": GOOD,
        "tplug_importfails": "import tplug_this_module_does_not_exist\n",
        "tplug_raises": plugin_module(
            """
            @hookimpl
            def arbd_exchanges():
                raise RuntimeError("exchange list unavailable")
            """
        ),
        "tplug_notadapter": plugin_module(
            """
            @hookimpl
            def arbd_exchanges():
                return [object]
            """
        ),
        # Entry points load in name order: "tgood" registers goodex first, "tzdup" collides.
        "tplug_dup": plugin_module(
            """
            @hookimpl
            def arbd_exchanges():
                return [make_adapter("dupex_ok"), make_adapter("goodex")]
            """
        ),
    }
    entry_points = {
        "tgood": "tplug_good",
        "timportfails": "tplug_importfails",
        "traises": "tplug_raises",
        "tnotadapter": "tplug_notadapter",
        "tzdup": "tplug_dup",
    }
    distribution(site, "tplug-mixed", entry_points, modules)
    registry = load_plugins(env={"ARBD_LOAD_PLUGINS": ",".join(entry_points)})

    assert [p.name for p in registry.plugins] == ["tgood"]
    assert sorted(registry.exchanges) == ["goodex"]  # nothing of a failed plugin is kept
    errors = {p.name: p.error for p in registry.failed}
    assert sorted(errors) == ["timportfails", "tnotadapter", "traises", "tzdup"]
    assert errors["timportfails"].startswith("ModuleNotFoundError")
    assert "tplug_this_module_does_not_exist" in errors["timportfails"]
    assert errors["traises"] == "RuntimeError: exchange list unavailable"
    assert "not an ExchangeAdapter subclass" in errors["tnotadapter"]
    assert "'goodex' is already registered" in errors["tzdup"]
    assert all(p.version == "1.0" for p in registry.failed)


def test_arbd_load_plugins_restricts_loading(site: Path) -> None:
    other = plugin_module(
        """
        @hookimpl
        def arbd_exchanges():
            return [make_adapter("otherex")]
        """
    )
    distribution(
        site,
        "tplug-two",
        {"tgood": "tplug_good", "tother": "tplug_other"},
        {"tplug_common": ADAPTER, "tplug_good": GOOD, "tplug_other": other},
    )
    only_other = load_plugins(env={"ARBD_LOAD_PLUGINS": " tother , "})
    assert [p.name for p in only_other.plugins] == ["tother"]
    assert sorted(only_other.exchanges) == ["otherex"]
    assert "tplug_good" not in sys.modules  # a plugin left out is not even imported

    both = load_plugins(env={"ARBD_LOAD_PLUGINS": "tgood,tother"})
    assert sorted(both.exchanges) == ["goodex", "otherex"]

    unrestricted = load_plugins(env={})
    assert {"tgood", "tother"} <= {p.name for p in unrestricted.plugins}
