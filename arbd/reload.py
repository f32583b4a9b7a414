"""Config reload planning: what differs between the running config and a newly loaded one (pure).

:func:`plan_reload` compares the two and says what the daemon must do, in data: exchanges to
start, stop or restart, symbols to add and remove, whether the arbitrage engine is
reconfigured, the new log level, and one human-readable line per change. It changes nothing;
:meth:`arbd.daemon.Daemon.reload` validates what needs the plugins (adapters for new exchanges,
symbols against loaded instruments) and then applies the plan.

What applies live and what needs a restart (``docs/configuration.md``, "Reloading"):

* live: ``daemon.name``, ``logging.level``, ``arbitrage.*`` (except ``enabled``), exchanges
  added, removed or enabled/disabled, their symbols (new connections for added symbols, others
  untouched), ``taker_fee_pct`` / ``maker_fee_pct``, and per-exchange settings that need new
  connections (``channels``, ``book_depth``, ``ws_url``, ``rest_url``, ``stale_after``,
  ``rotate_after``): that exchange's feed restarts;
* restart needed: ``server.*``, ``control.*``, ``metrics.*``, ``feed.*``, ``logging.format``,
  ``daemon.plugin_dirs``,
  ``arbitrage.enabled``. These keep their running values (the plan's ``config`` says so), so a
  later reload reports them again until the daemon is restarted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from arbd.arbitrage.conversion import conversion_symbols
from arbd.config import Config, ExchangeConfig

RESTART_SECTIONS: Final = ("server", "control", "metrics", "feed")
"""Sections read once at start-up: listeners, sockets, supervision timings."""
FEED_RESTART_KEYS: Final = (
    "channels",
    "book_depth",
    "ws_url",
    "rest_url",
    "stale_after",
    "rotate_after",
)
"""Per-exchange keys baked into the adapter or its connections: the exchange's feed restarts."""


def effective_symbols(
    settings: ExchangeConfig, default_symbols: Sequence[str], extra: Sequence[str] = ()
) -> tuple[str, ...]:
    """The symbols an exchange subscribes: the configured ones (the adapter's defaults when
    none are), then ``extra`` (conversion markets of the arbitrage engine) not among them."""
    symbols = tuple(settings.symbols or default_symbols)
    return symbols + tuple(s for s in extra if s not in symbols)


@dataclass
class ReloadPlan:
    """What a reload does. ``config`` is the configuration that runs afterwards."""

    config: Config
    lines: list[str] = field(default_factory=list)
    """One line per change, e.g. ``binance: +ETH/USDT`` or ``restart needed for server.port``."""
    added: list[str] = field(default_factory=list)
    """Exchanges to start."""
    removed: list[str] = field(default_factory=list)
    """Exchanges to stop."""
    restarted: list[str] = field(default_factory=list)
    """Exchanges whose feed restarts with new settings (symbols included)."""
    symbols_added: dict[str, list[str]] = field(default_factory=dict)
    symbols_removed: dict[str, list[str]] = field(default_factory=dict)
    """Symbol changes of exchanges that keep running (not restarted)."""
    reconfigure_engine: bool = False
    """Arbitrage settings or taker fees changed, or exchanges came or went."""
    log_level: str | None = None
    """The new ``logging.level``, when it changed."""


def show(value: Any) -> str:
    """A config value as a change line shows it (TOML-like; ``unset`` for a missing one)."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, (list, tuple, dict)):
        return msgspec.json.encode(value).decode()
    return str(value)


def _changed_keys(old: msgspec.Struct, new: msgspec.Struct) -> list[tuple[str, Any, Any]]:
    """(key, old value, new value) of every field that differs, in declaration order."""
    before = msgspec.to_builtins(old)
    after = msgspec.to_builtins(new)
    return [
        (f.name, before.get(f.name), after.get(f.name))
        for f in msgspec.structs.fields(type(old))
        if before.get(f.name) != after.get(f.name)
    ]


def plan_reload(
    running: Config,
    new: Config,
    running_symbols: Mapping[str, Sequence[str]],
    default_symbols: Mapping[str, Sequence[str]],
    file: str = "",
) -> ReloadPlan:
    """Plan the move from ``running`` to ``new``.

    ``running_symbols``: exchange id -> symbols subscribed now, for every exchange whose feed
    runs (runtime ``symbols add|remove`` included, so the file wins on reload).
    ``default_symbols``: exchange id -> the adapter's default symbols, for installed exchanges.
    Raises ``ConfigError`` for what only the pair of configs can show wrong (a conversion
    market on an exchange that is not enabled).
    """
    restart: list[str] = []
    applied = new
    # Keys read only at start-up keep their running values, so the running config stays true.
    for section in RESTART_SECTIONS:
        restart += [
            f"{section}.{key}"
            for key, _, _ in _changed_keys(getattr(running, section), getattr(new, section))
        ]
        applied = msgspec.structs.replace(applied, **{section: getattr(running, section)})
    if running.logging.format != new.logging.format:
        restart.append("logging.format")
        kept_format = msgspec.structs.replace(new.logging, format=running.logging.format)
        applied = msgspec.structs.replace(applied, logging=kept_format)
    if running.daemon.plugin_dirs != new.daemon.plugin_dirs:
        restart.append("daemon.plugin_dirs")  # plugins are loaded once, at start-up
        kept_dirs = msgspec.structs.replace(applied.daemon, plugin_dirs=running.daemon.plugin_dirs)
        applied = msgspec.structs.replace(applied, daemon=kept_dirs)
    if running.arbitrage.enabled != new.arbitrage.enabled:
        # The engine is created (or not) at start-up; its other settings wait with it.
        restart.append("arbitrage.enabled")
        applied = msgspec.structs.replace(applied, arbitrage=running.arbitrage)

    plan = ReloadPlan(config=applied)
    lines = plan.lines
    for key, before, after in _changed_keys(running.daemon, applied.daemon):
        lines.append(f"daemon.{key} {show(before)} -> {show(after)}")
    if running.logging.level != applied.logging.level:
        plan.log_level = applied.logging.level
        lines.append(f"logging.level {running.logging.level} -> {applied.logging.level}")
    arbitrage = _changed_keys(running.arbitrage, applied.arbitrage)
    lines += [f"arbitrage: {key} {show(a)} -> {show(b)}" for key, a, b in arbitrage]
    plan.reconfigure_engine = bool(arbitrage)
    _plan_exchanges(plan, running, running_symbols, default_symbols, file)
    lines += [f"restart needed for {key}" for key in restart]
    return plan


def _plan_exchanges(
    plan: ReloadPlan,
    running: Config,
    running_symbols: Mapping[str, Sequence[str]],
    default_symbols: Mapping[str, Sequence[str]],
    file: str,
) -> None:
    new = plan.config
    extra = conversion_symbols(new, file)
    wanted = {
        exchange_id: effective_symbols(
            settings, default_symbols.get(exchange_id, ()), extra.get(exchange_id, ())
        )
        for exchange_id, settings in new.exchanges.items()
        if settings.enabled
    }
    for exchange_id in sorted(running_symbols.keys() | wanted.keys()):
        lines = plan.lines
        if exchange_id not in wanted:
            plan.removed.append(exchange_id)
            lines.append(f"{exchange_id}: removed")
            plan.reconfigure_engine = True
            continue
        if exchange_id not in running_symbols:
            plan.added.append(exchange_id)
            lines.append(f"{exchange_id}: added")
            plan.reconfigure_engine = True
            continue
        old_settings = running.exchanges.get(exchange_id, ExchangeConfig())
        restart = False
        for key, before, after in _changed_keys(old_settings, new.exchanges[exchange_id]):
            if key in ("enabled", "symbols"):
                continue  # enabled in both; symbols are compared as subscribed, below
            note = ""
            if key in FEED_RESTART_KEYS:
                restart = True
                note = " (feed restarted)"
            elif key == "taker_fee_pct":
                plan.reconfigure_engine = True
            lines.append(f"{exchange_id}: {key} {show(before)} -> {show(after)}{note}")
        now = running_symbols[exchange_id]
        added = [s for s in wanted[exchange_id] if s not in now]
        removed = [s for s in now if s not in wanted[exchange_id]]
        lines += [f"{exchange_id}: +{s}" for s in added]
        lines += [f"{exchange_id}: -{s}" for s in removed]
        if restart:
            plan.restarted.append(exchange_id)
            continue
        if added:
            plan.symbols_added[exchange_id] = added
        if removed:
            plan.symbols_removed[exchange_id] = removed
