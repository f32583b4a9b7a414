"""Symbol helpers: native <-> normalized maps and "did you mean" errors for unknown symbols."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence

from arbd.errors import ConfigError


def normalize(base: str, quote: str) -> str:
    """``BASE/QUOTE`` in upper case."""
    return f"{base.upper()}/{quote.upper()}"


class SymbolMap:
    """Bidirectional map between an exchange's native names and normalized symbols."""

    __slots__ = ("to_native", "to_symbol")

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self.to_symbol: dict[str, str] = {}
        self.to_native: dict[str, str] = {}
        for native, symbol in pairs:
            self.add(native, symbol)

    def add(self, native: str, symbol: str) -> None:
        self.to_symbol[native] = symbol
        self.to_native[symbol] = native

    def __contains__(self, symbol: object) -> bool:
        return symbol in self.to_native

    def __len__(self) -> int:
        return len(self.to_native)


def check_symbols(exchange: str, wanted: Iterable[str], known: Mapping[str, object]) -> None:
    """Raise ``ConfigError`` naming the first configured symbol the exchange does not list."""
    for symbol in wanted:
        if symbol not in known:
            close = difflib.get_close_matches(symbol, list(known), n=3, cutoff=0.6)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(
                f"unknown symbol {symbol!r} on {exchange}{hint}",
                key=f"exchanges.{exchange}.symbols",
            )


_SYMBOL = re.compile(r"[A-Z0-9]+/[A-Z0-9]+")


def parse_symbols(symbols: Sequence[str]) -> list[str]:
    """Normalized symbols as a person types them (``btc/usdt`` is ``BTC/USDT``); raises
    ``ConfigError`` for none at all or one that is not ``BASE/QUOTE``."""
    if isinstance(symbols, str):
        symbols = [symbols]
    out = [s.strip().upper() for s in symbols]
    if not out:
        raise ConfigError("no symbols given")
    for symbol in out:
        if not _SYMBOL.fullmatch(symbol):
            raise ConfigError(f"{symbol!r} is not a BASE/QUOTE symbol like BTC/USDT")
    return out
