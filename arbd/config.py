"""Configuration: TOML -> validated, typed structs. Unknown keys are errors.

Every problem becomes one :class:`arbd.errors.ConfigError` line of the form
``<file>: <key.path>: <problem>``, e.g. ``arbd.toml: server.prot: unknown key`` or
``arbd.toml: exchanges.binance.book_depth: expected int, got str``.

The structs are the single source of the defaults: ``arbd config init`` writes
``msgspec.to_builtins(Config())`` plus one section per installed exchange plugin.
"""

from __future__ import annotations

import ipaddress
import math
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Final, Literal, NoReturn

import msgspec

from arbd.errors import ConfigError
from arbd.model import CHANNELS


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class DaemonConfig(_Section):
    name: str = "arbd"
    """Shown in status and the systemd STATUS line."""
    plugin_dirs: list[str] = msgspec.field(default_factory=list)
    """Directories holding third-party exchange plugins installed with
    ``pip install --target DIR``; read at start-up (also by the single-binary build)."""


class ServerConfig(_Section):
    """The local WebSocket server for programs (``arbd.server``)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8765
    path: str = "/ws"
    token: str = ""
    """Required when ``host`` is not a loopback address."""
    allowed_origins: list[str] = msgspec.field(default_factory=list)
    """Browser ``Origin``s allowed to connect (empty: any; clients without one always may)."""
    max_clients: int = 1000
    max_message_bytes: int = 65536
    """Largest client message; a bigger one closes the connection with code 1009."""
    max_subscriptions: int = 1000
    """Active (channel, exchange, symbol) subscriptions per client."""
    max_messages_per_s: float = 100.0
    """Client messages per second (bursts of one second's worth); more get ``rate_limited``."""
    buffer: int = 10000
    """Events buffered per client while it is behind."""
    slow_policy: Literal["conflate", "drop_oldest", "disconnect"] = "conflate"
    slow_deadline: float = 10.0
    """``disconnect`` policy: seconds one write may stay blocked before the client is dropped."""


class ControlConfig(_Section):
    """The Unix-socket control channel for arbctl (``arbd.control``)."""

    enabled: bool = True
    socket: str = ""
    """Empty: $RUNTIME_DIRECTORY/control.sock, else $XDG_RUNTIME_DIR/arbd/control.sock, else
    /tmp/arbd-<uid>/control.sock (``arbd.control.paths``)."""
    buffer: Annotated[int, msgspec.Meta(ge=16)] = 10_000
    """Events buffered per ``subscribe`` stream before prices and books are conflated."""
    max_connections: Annotated[int, msgspec.Meta(ge=1)] = 64

    def __post_init__(self) -> None:
        if self.socket and not self.socket.startswith("/"):
            raise ValueError(f"socket must be an absolute path, got {self.socket!r}")


class MetricsConfig(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 9464


class LoggingConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


class FeedConfig(_Section):
    """How exchange connections are supervised (defaults for every exchange)."""

    stale_after: float = 10.0
    """Seconds without data on a continuous subscription before it is recovered."""
    connect_timeout: float = 10.0
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    backoff_reset_after: float = 60.0
    """A connection live this long resets the backoff to its base."""
    max_attempts: int = 0
    """Consecutive failed attempts before the exchange is marked failed (0: never)."""
    connection_budget: int = 20
    """At most this many new connections per exchange per ``connection_budget_window``."""
    connection_budget_window: float = 60.0
    rotation_margin: float = 600.0
    """Open the replacement this many seconds before the exchange's connection age limit."""
    max_frame_bytes: int = 64 * 1024 * 1024
    rest_timeout: float = 10.0
    rest_retries: int = 3


class ExchangeConfig(_Section):
    enabled: bool = True
    symbols: list[str] = msgspec.field(default_factory=list)
    channels: list[str] = msgspec.field(default_factory=lambda: list(CHANNELS))
    book_depth: int = 20
    ws_url: str = ""
    """Override the exchange's WebSocket URL (testnets, fakes). Empty: the adapter's default."""
    rest_url: str = ""
    taker_fee_pct: float | None = None
    """Override the adapter's default taker fee, in percent (0.1 means 0.1%)."""
    maker_fee_pct: float | None = None
    stale_after: float | None = None
    """Override ``feed.stale_after`` for this exchange."""
    rotate_after: float | None = None
    """Override the adapter's connection age limit in seconds (0 disables rotation)."""


class ArbitrageConfig(_Section):
    """The cross-exchange opportunity detector (``arbd.arbitrage``). Percentages are percent
    (0.1 means 0.1 %); times are seconds; money is in the compared quote currency."""

    enabled: bool = True
    open_threshold_pct: float = 0.1
    close_threshold_pct: float = 0.05
    min_duration: float = 0.2
    min_updates: int = 3
    max_quote_age: float = 2.0
    update_interval: float = 1.0
    update_min_change_pct: float = 0.02
    """An open opportunity emits ``update`` when its net spread moved at least this much."""
    tick_interval: float = 0.1
    """How often the daemon re-checks open opportunities for legs gone stale without data."""
    sizes: list[float] = msgspec.field(default_factory=lambda: [1_000.0, 10_000.0, 100_000.0])
    max_notional: float = 100_000.0
    quote_groups: list[list[str]] = msgspec.field(default_factory=lambda: [["USD", "USDT", "USDC"]])
    conversion: Literal["par", "live"] = "par"
    conversion_markets: list[str] = msgspec.field(default_factory=list)
    """``exchange:SYMBOL`` markets used for ``conversion = "live"``, e.g. ``kraken:USDT/USD``."""


class Config(_Section):
    daemon: DaemonConfig = msgspec.field(default_factory=DaemonConfig)
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    control: ControlConfig = msgspec.field(default_factory=ControlConfig)
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)
    feed: FeedConfig = msgspec.field(default_factory=FeedConfig)
    exchanges: dict[str, ExchangeConfig] = msgspec.field(default_factory=dict)
    arbitrage: ArbitrageConfig = msgspec.field(default_factory=ArbitrageConfig)


_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<field>.+)`$")
_TYPE = re.compile(r"^Expected `(?P<want>[^`]+)`, got `(?P<got>[^`]+)`$")


def _key_path(raw: str) -> str:
    # msgspec paths look like ".exchanges['binance'].symbols[0]"; render them as TOML key paths.
    path = re.sub(r"\['([^']*)'\]", r".\1", raw)
    return path.lstrip(".")


def _translate(error: msgspec.ValidationError, file: str, prefix: str = "") -> ConfigError:
    text = str(error)
    path = prefix
    match = _PATH.search(text)
    if match:
        path = ".".join(p for p in (prefix, _key_path(match["path"])) if p)
        text = text[: match.start()]
    unknown = _UNKNOWN.match(text)
    if unknown:
        field = unknown["field"]
        return ConfigError("unknown key", path=file, key=f"{path}.{field}" if path else field)
    wrong = _TYPE.match(text)
    if wrong:
        # Speak TOML: msgspec's JSON words "object"/"array" are a table and an array in TOML.
        names = {"object": "table", "array": "array", "null": "nothing"}
        want, got = (names.get(w, w) for w in (wrong["want"], wrong["got"]))
        text = f"expected {want}, got {got}"
    return ConfigError(text, path=file, key=path)


def _check(config: Config, file: str) -> None:
    """Rules a type alone cannot state."""

    def fail(key: str, problem: str) -> NoReturn:
        raise ConfigError(problem, path=file, key=key)

    for section, port in (("server", config.server.port), ("metrics", config.metrics.port)):
        if not 0 <= port <= 65535:
            fail(f"{section}.port", f"port {port} is outside 0-65535")
    check_server(config.server, file)
    feed = config.feed
    for key in ("stale_after", "connect_timeout", "backoff_base", "backoff_cap", "rest_timeout"):
        if getattr(feed, key) <= 0:
            fail(f"feed.{key}", "must be greater than 0")
    if feed.backoff_cap < feed.backoff_base:
        fail("feed.backoff_cap", "must be at least feed.backoff_base")
    if feed.max_frame_bytes < 1024:
        fail("feed.max_frame_bytes", "must be at least 1024")
    if feed.connection_budget < 1:
        fail("feed.connection_budget", "must be at least 1")
    for exchange_id, ex in config.exchanges.items():
        base = f"exchanges.{exchange_id}"
        if not re.fullmatch(r"[a-z][a-z0-9_]*", exchange_id):
            fail(base, "exchange ids are lower case letters, digits and '_'")
        for i, channel in enumerate(ex.channels):
            if channel not in CHANNELS:
                fail(
                    f"{base}.channels[{i}]",
                    f"unknown channel {channel!r} (one of {', '.join(CHANNELS)})",
                )
        for i, symbol in enumerate(ex.symbols):
            if not re.fullmatch(r"[A-Z0-9]+/[A-Z0-9]+", symbol):
                fail(f"{base}.symbols[{i}]", f"{symbol!r} is not a BASE/QUOTE symbol like BTC/USDT")
        if not 1 <= ex.book_depth <= 5000:
            fail(f"{base}.book_depth", "must be between 1 and 5000")
        for key in ("ws_url", "rest_url"):
            url = getattr(ex, key)
            schemes = ("ws://", "wss://") if key == "ws_url" else ("http://", "https://")
            if url and not url.startswith(schemes):
                fail(f"{base}.{key}", f"{url!r} must start with {' or '.join(schemes)}")
        for key in ("taker_fee_pct", "maker_fee_pct"):
            fee = getattr(ex, key)
            if fee is not None and not -1.0 < fee < 10.0:
                fail(f"{base}.{key}", f"{fee} is not a plausible fee in percent")
    _check_arbitrage(config.arbitrage, fail)


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1); an empty host (every
    interface) and any other name are not."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


MIN_TOKEN_LENGTH: Final = 16


def check_server(server: ServerConfig, file: str = "<config>") -> None:
    """The ``[server]`` rules a type cannot state. Also run by the server itself at start, so a
    ``Config`` built in code cannot open an unauthenticated port to the network."""

    def fail(key: str, problem: str) -> NoReturn:
        raise ConfigError(problem, path=file, key=f"server.{key}")

    if not server.path.startswith("/"):
        fail("path", "must start with '/'")
    if server.token:
        if len(server.token) < MIN_TOKEN_LENGTH or not server.token.isascii():
            fail("token", f"must be at least {MIN_TOKEN_LENGTH} ASCII characters")
        if any(c.isspace() or not c.isprintable() for c in server.token):
            fail("token", "must not contain spaces or control characters")
    elif not is_loopback_host(server.host):
        fail(
            "token",
            f"required when server.host ({server.host or 'every interface'}) is not a "
            "loopback address",
        )
    for i, origin in enumerate(server.allowed_origins):
        if not re.fullmatch(r"[a-z][a-z0-9+.-]*://[^/\s]+", origin) and origin != "null":
            fail(f"allowed_origins[{i}]", f"{origin!r} is not an origin like https://example.com")
    for key in ("max_clients", "max_subscriptions", "buffer"):
        if getattr(server, key) < 1:
            fail(key, "must be at least 1")
    if server.max_message_bytes < 256:
        fail("max_message_bytes", "must be at least 256")
    for key in ("max_messages_per_s", "slow_deadline"):
        if not 0 < getattr(server, key) < math.inf:
            fail(key, "must be greater than 0")


def _check_arbitrage(arb: ArbitrageConfig, fail: Callable[[str, str], NoReturn]) -> None:
    for key in ("open_threshold_pct", "close_threshold_pct", "max_notional"):
        if not math.isfinite(getattr(arb, key)):
            fail(f"arbitrage.{key}", "must be a finite number")
    if arb.open_threshold_pct < 0:
        # A negative threshold would publish trades that lose money after fees.
        fail("arbitrage.open_threshold_pct", "must not be negative")
    if arb.close_threshold_pct > arb.open_threshold_pct:
        fail("arbitrage.close_threshold_pct", "must not exceed arbitrage.open_threshold_pct")
    for key in ("max_quote_age", "tick_interval", "max_notional"):
        if not getattr(arb, key) > 0:
            fail(f"arbitrage.{key}", "must be greater than 0")
    for key in ("min_duration", "update_interval", "update_min_change_pct"):
        if not getattr(arb, key) >= 0:
            fail(f"arbitrage.{key}", "must not be negative")
    if arb.min_updates < 1:
        fail("arbitrage.min_updates", "must be at least 1")
    for i, size in enumerate(arb.sizes):
        if not 0 < size < math.inf:
            fail(f"arbitrage.sizes[{i}]", "must be greater than 0")
    seen: dict[str, str] = {}
    for g, group in enumerate(arb.quote_groups):
        if len(group) < 2:
            fail(f"arbitrage.quote_groups[{g}]", "a group needs at least two quote currencies")
        for i, currency in enumerate(group):
            key = f"arbitrage.quote_groups[{g}][{i}]"
            if not re.fullmatch(r"[A-Z0-9]+", currency):
                fail(key, f"{currency!r} is not an upper-case currency code like USDT")
            if currency in seen:
                fail(key, f"{currency} is already in {seen[currency]}")
            seen[currency] = f"arbitrage.quote_groups[{g}]"
    if arb.conversion == "live" and not arb.conversion_markets:
        fail("arbitrage.conversion_markets", 'needed when arbitrage.conversion = "live"')
    # Live conversion prices every currency of a group in the group's first one (its
    # reference), so each other currency needs exactly one market against the reference.
    reference = {c: group[0] for group in arb.quote_groups for c in group}
    converted: dict[str, str] = {}
    for i, market in enumerate(arb.conversion_markets):
        key = f"arbitrage.conversion_markets[{i}]"
        if not re.fullmatch(r"[a-z][a-z0-9_]*:[A-Z0-9]+/[A-Z0-9]+", market):
            fail(key, f"{market!r} is not exchange:BASE/QUOTE")
        base, quote = market.partition(":")[2].split("/")
        pair = {base, quote}
        target = next((c for c in pair if reference.get(c) in pair - {c}), None)
        if target is None:
            fail(key, f"{market!r} does not price a quote currency in its group's first currency")
        if target in converted:
            fail(key, f"{target} is already converted by {converted[target]}")
        converted[target] = market
    if arb.conversion == "live":
        for g, group in enumerate(arb.quote_groups):
            for currency in group[1:]:
                if currency not in converted:
                    fail(
                        "arbitrage.conversion_markets",
                        f"no market converts {currency} to {group[0]} "
                        f"(arbitrage.quote_groups[{g}])",
                    )


def parse_config(data: dict[str, Any], file: str = "<config>") -> Config:
    """Validate an already-parsed TOML document."""
    # msgspec renders dict keys in error paths as "[...]"; convert each exchange on its own so
    # the error can name it ("exchanges.binance.book_depth").
    data = dict(data)
    exchanges_raw = data.pop("exchanges", {})
    try:
        config = msgspec.convert(data, Config)
    except msgspec.ValidationError as exc:
        raise _translate(exc, file) from None
    if not isinstance(exchanges_raw, dict):
        raise ConfigError("expected a table of exchanges", path=file, key="exchanges")
    for exchange_id, raw in exchanges_raw.items():
        try:
            config.exchanges[exchange_id] = msgspec.convert(raw, ExchangeConfig)
        except msgspec.ValidationError as exc:
            raise _translate(exc, file, f"exchanges.{exchange_id}") from None
    _check(config, file)  # first: its messages are the more specific ones
    _reject_nan(msgspec.to_builtins(config), file)
    return config


def _reject_nan(value: object, file: str, key: str = "") -> None:
    """TOML has ``nan``; no setting means it, and it passes range checks written as "fail if
    below" (each comparison with NaN is false), so it is refused wherever it appears."""
    if isinstance(value, float) and math.isnan(value):
        raise ConfigError("must be a number, got nan", path=file, key=key)
    if isinstance(value, dict):
        for name, item in value.items():
            _reject_nan(item, file, f"{key}.{name}" if key else str(name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _reject_nan(item, file, f"{key}[{index}]")


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file. Raises ``ConfigError`` with a one-line message."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", path=file) from None
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", path=file) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", path=file) from None
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise ConfigError("invalid TOML: arrays or tables nested too deeply", path=file) from None
    return parse_config(data, file)


def config_to_dict(config: Config) -> dict[str, Any]:
    """Builtins for TOML output (``None`` values dropped: TOML has no null)."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    result: dict[str, Any] = strip(msgspec.to_builtins(config))
    return result
