"""Plugin discovery and the typed registry the rest of arbd reads.

Plugins are found through the ``arbd`` entry-point group, in the Python environment and in plugin
directories (``daemon.plugin_dirs``, and ``$ARBD_PLUGIN_PATH`` separated by ``:``): a directory a
plugin was installed into with ``pip install --target DIR`` is put on ``sys.path``, so its
distribution's entry points are found like any other. That is how the single-binary build, which
has no pip of its own, takes third-party exchanges. ``ARBD_LOAD_PLUGINS=a,b`` restricts loading
to the named entry points. A plugin that fails to import, whose hook raises, or that
registers something invalid is reported by name in ``PluginRegistry.failed`` and skipped: one
broken third-party plugin never takes the daemon down.

There is no module-level plugin manager: ``load_plugins()`` builds a fresh one each call, so tests
and the CLI get independent registries.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from arbd import hookspecs
from arbd.errors import ConfigError
from arbd.exchange.adapter import AdapterSettings, ExchangeAdapter, ExchangeSpec
from arbd.hookspecs import PROJECT
from arbd.reload import effective_symbols

if TYPE_CHECKING:
    from arbd.config import ExchangeConfig
    from arbd.testing.fake import FakeExchangeFactory

ENTRY_POINT_GROUP = "arbd"


@dataclass
class PluginInfo:
    name: str
    version: str
    exchanges: list[str] = field(default_factory=list)
    channels: dict[str, list[str]] = field(default_factory=dict)
    fakes: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class PluginRegistry:
    """What the loaded plugins registered. Built once at start-up."""

    manager: pluggy.PluginManager
    plugins: list[PluginInfo] = field(default_factory=list)
    failed: list[PluginInfo] = field(default_factory=list)
    exchanges: dict[str, type[ExchangeAdapter]] = field(default_factory=dict)
    fakes: dict[str, FakeExchangeFactory] = field(default_factory=dict)

    def adapter_class(self, exchange_id: str) -> type[ExchangeAdapter]:
        return self.exchanges[exchange_id]

    def build_adapter(
        self, exchange_id: str, settings: ExchangeConfig, extra_symbols: Sequence[str] = ()
    ) -> ExchangeAdapter:
        """Instantiate the configured adapter; an unknown exchange id is a ConfigError.
        ``extra_symbols`` are subscribed as well (conversion markets of the arbitrage engine)."""
        cls = self.exchanges.get(exchange_id)
        if cls is None:
            installed = ", ".join(sorted(self.exchanges)) or "none"
            raise ConfigError(
                f"unknown exchange {exchange_id!r} (installed: {installed})",
                key=f"exchanges.{exchange_id}",
            )
        spec = cls.spec
        return cls(
            AdapterSettings(
                ws_url=settings.ws_url or spec.ws_url,
                rest_url=(settings.rest_url or spec.rest_url).rstrip("/"),
                symbols=effective_symbols(settings, spec.default_symbols, extra_symbols),
                channels=tuple(c for c in settings.channels if c in spec.channels),
                book_depth=settings.book_depth,
            )
        )


def new_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(hookspecs)
    return manager


def _allowed(env: Mapping[str, str]) -> set[str] | None:
    raw = env.get("ARBD_LOAD_PLUGINS")
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _validate_adapter(
    item: Any, taken: Mapping[str, type[ExchangeAdapter]]
) -> type[ExchangeAdapter]:
    if not (isinstance(item, type) and issubclass(item, ExchangeAdapter)):
        raise TypeError(f"arbd_exchanges returned {item!r}, not an ExchangeAdapter subclass")
    spec = getattr(item, "spec", None)
    if not isinstance(spec, ExchangeSpec):
        raise TypeError(f"{item.__name__}.spec is not an ExchangeSpec")
    if spec.id in taken:
        raise ValueError(f"exchange id {spec.id!r} is already registered by another plugin")
    return item


def _call(function: Callable[[], Any]) -> list[Any]:
    result = function()
    if result is None:
        return []
    if not isinstance(result, Iterable):
        raise TypeError(f"{function.__name__} must return a list, got {type(result).__name__}")
    return list(result)


def add_plugin_dirs(dirs: Iterable[str], env: Mapping[str, str]) -> list[str]:
    """Put plugin directories (``dirs`` and ``$ARBD_PLUGIN_PATH``) on ``sys.path``; returns
    those that exist. A directory that does not exist is skipped: a fresh install has none."""
    wanted = [*dirs, *env.get("ARBD_PLUGIN_PATH", "").split(os.pathsep)]
    found = []
    for entry in wanted:
        if not entry:
            continue
        path = os.path.abspath(os.path.expanduser(entry))
        if os.path.isdir(path):
            found.append(path)
            if path not in sys.path:
                sys.path.append(path)
    return found


def load_plugins(
    *,
    env: Mapping[str, str] | None = None,
    extra: Iterable[tuple[str, ModuleType | object]] = (),
    discover: bool = True,
    plugin_dirs: Iterable[str] = (),
) -> PluginRegistry:
    """Discover, load and validate plugins.

    ``extra`` registers (name, plugin) pairs directly, as tests and embedding programs do;
    ``discover=False`` skips entry points entirely; ``plugin_dirs`` are searched too.
    """
    env = os.environ if env is None else env
    allowed = _allowed(env)
    if discover:
        add_plugin_dirs(plugin_dirs, env)
    manager = new_manager()
    registry = PluginRegistry(manager=manager)

    candidates: list[tuple[str, str, Callable[[], object]]] = []
    if discover:
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if allowed is not None and ep.name not in allowed:
                continue
            version = ep.dist.version if ep.dist is not None else ""
            candidates.append((ep.name, version, _loader(ep)))
    for name, plugin in extra:
        candidates.append((name, "", _given(plugin)))

    for name, version, load in candidates:
        info = PluginInfo(name=name, version=version)
        try:
            plugin = load()
            manager.register(plugin, name=name)
            _collect(manager, plugin, info, registry)
        except Exception as exc:  # noqa: BLE001 - any failure in third-party code isolates it
            info.error = _describe(exc)
            if manager.get_plugin(name) is not None:
                manager.unregister(name=name)
            registry.failed.append(info)
            continue
        registry.plugins.append(info)
    return registry


def _given(plugin: object) -> Callable[[], object]:
    def load() -> object:
        return plugin

    return load


def _loader(ep: EntryPoint) -> Callable[[], object]:
    return ep.load


def _collect(
    manager: pluggy.PluginManager, plugin: object, info: PluginInfo, registry: PluginRegistry
) -> None:
    """Call this plugin's hooks on their own, so a failure is attributed to it alone."""
    adapters: dict[str, type[ExchangeAdapter]] = {}
    fakes: dict[str, FakeExchangeFactory] = {}
    for impl in manager.hook.arbd_exchanges.get_hookimpls():
        if impl.plugin is plugin:
            for item in _call(impl.function):
                adapter = _validate_adapter(item, {**registry.exchanges, **adapters})
                adapters[adapter.spec.id] = adapter
    for impl in manager.hook.arbd_fake_exchanges.get_hookimpls():
        if impl.plugin is plugin:
            from arbd.testing.fake import FakeExchangeFactory  # noqa: PLC0415 - avoid a cycle

            for item in _call(impl.function):
                if not isinstance(item, FakeExchangeFactory):
                    raise TypeError(f"arbd_fake_exchanges returned {item!r}")
                fakes[item.exchange] = item
    registry.exchanges.update(adapters)
    registry.fakes.update(fakes)
    info.exchanges = sorted(adapters)
    info.channels = {eid: list(cls.spec.channels) for eid, cls in sorted(adapters.items())}
    info.fakes = sorted(fakes)
