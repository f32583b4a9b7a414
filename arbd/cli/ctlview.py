"""How ``arbctl`` shows control-channel replies and events to people. Pure and stdlib-only.

Everything here takes the plain dicts of the wire schema (camelCase keys, ``docs/protocol.md``)
and returns lines of text; ``arbctl`` decides where they go. No msgspec and no arbd model import:
``arbctl`` must start in well under 150 ms.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Json = Mapping[str, Any]

CHANNEL_NAMES = ("price", "trades", "book", "candles", "arbitrage", "status")
"""``arbd.model.ALL_CHANNELS``, repeated so arbctl need not import msgspec (a test keeps them
equal)."""


def table(rows: Sequence[Sequence[str]], right: Iterable[int] = ()) -> list[str]:
    """Aligned columns, two spaces apart; columns in ``right`` are right-aligned (numbers)."""
    if not rows:
        return []
    right_set = set(right)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i in right_set else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def duration(seconds: float) -> str:
    """``45s``, ``3m 05s``, ``2h 03m 04s``, ``3d 02h 01m``."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m {s:02d}s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h {m:02d}m {s:02d}s"
    d, h = divmod(h, 24)
    return f"{d}d {h:02d}h {m:02d}m"


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f}s"
    return duration(seconds)


def clock(ms: int | None) -> str:
    """Local wall-clock time of an event timestamp (ms since the epoch), to the millisecond."""
    if ms is None:
        return "--:--:--.---"
    return time.strftime("%H:%M:%S", time.localtime(ms / 1000)) + f".{ms % 1000:03d}"


def signed_pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f} %"


def money(value: float | None, currency: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.2f} {currency}".rstrip()


# -- status -----------------------------------------------------------------------------------


def status_lines(status: Json) -> list[str]:
    """``arbctl status``: a header, then one row per exchange; errors of failed ones below."""
    header = f"arbd {status['version']}  pid {status['pid']}  up {duration(status['uptime'])}"
    if status.get("configPath"):
        header += f"  config {status['configPath']}"
    lines = [
        header,
        f"clients {status['clients']}  open opportunities {status['opportunitiesOpen']}",
        "",
    ]
    rows = [
        [
            "EXCHANGE",
            "STATE",
            "CONN",
            "MSG/S",
            "LAST MSG",
            "RECONNECTS",
            "BOOKS OK",
            "BOOKS BAD",
            "SYMBOLS",
        ]
    ]
    problems = []
    for ex in status["exchanges"]:
        rows.append(
            [
                ex["exchange"],
                ex["state"],
                f"{ex['connectionsLive']}/{ex['connections']}",
                f"{ex['messagesPerS']:.1f}",
                age(ex["lastMessageAge"]),
                str(ex["reconnects"]),
                str(ex["booksValid"]),
                str(ex["booksInvalid"]),
                str(len(ex["symbols"])),
            ]
        )
        if ex.get("error"):
            problems.append(f"{ex['exchange']}: {ex['error']}")
    if len(rows) == 1:
        lines.append("no exchanges configured")
    else:
        lines.extend(table(rows, right={3, 4, 5, 6, 7, 8}))
    lines.extend(problems)
    return lines


# -- events -----------------------------------------------------------------------------------


def _where(event: Json) -> str:
    return f"{event.get('exchange', ''):<9} {event.get('symbol', ''):<10}"


def opportunity_summary(event: Json) -> str:
    """One opportunity event, e.g. ``open BTC/USD buy binance 64000.10 sell coinbase 64650.00
    net +0.289 % profit 114.44 USD qty 0.65``."""
    text = (
        f"{event['event']:<6} {event['symbol']:<10} "
        f"buy {event['buyExchange']} {event['buyPrice']}  "
        f"sell {event['sellExchange']} {event['sellPrice']}  "
        f"net {signed_pct(event['netSpreadPct'])}  "
        f"profit {money(event['profit'], event['currency'])}  qty {event['quantity']:g}"
    )
    if event.get("closeReason"):
        text += f"  ({event['closeReason']}, {duration(event['durationMs'] / 1000)})"
    return text


def event_line(event: Json) -> str:
    """One line per event for ``arbctl subscribe`` without ``--json``."""
    kind = event.get("type")
    stamp = clock(event.get("timestamp"))
    if kind == "price":
        return (
            f"{stamp} price   {_where(event)} bid {event['bid']} x {event['bidSize']}  "
            f"ask {event['ask']} x {event['askSize']}"
        )
    if kind == "trade":
        side = event.get("side") or "?"
        return f"{stamp} trade   {_where(event)} {side} {event['size']} @ {event['price']}"
    if kind == "book":
        bids, asks = event["bids"], event["asks"]
        best_bid = bids[0][0] if bids else "-"
        best_ask = asks[0][0] if asks else "-"
        return (
            f"{stamp} book    {_where(event)} {len(bids)}x{len(asks)} levels  "
            f"best {best_bid} / {best_ask}"
        )
    if kind == "candle":
        state = "closed" if event["closed"] else "open"
        return (
            f"{stamp} candle  {_where(event)} {event['interval']} o {event['open']} "
            f"h {event['high']} l {event['low']} c {event['close']} v {event['volume']} ({state})"
        )
    if kind == "status":
        subject = event.get("connection") or event.get("channel") or event.get("scope", "")
        reason = f" ({event['reason']})" if event.get("reason") else ""
        return (
            f"{stamp} status  {_where(event)} {event['scope']} {subject}: {event['state']}{reason}"
        )
    if kind == "arbitrage":
        return f"{stamp} arbitrage {opportunity_summary(event)}"
    if kind == "lag":
        now = clock(int(time.time() * 1000))
        return f"{now} lag     {event['dropped']} older prices/books replaced (reading too slowly)"
    return f"{stamp} {kind}"


def opportunity_lines(events: Sequence[Json], closed_too: bool) -> list[str]:
    """``arbctl opportunities``: one row per opportunity."""
    if not events:
        return ["no open opportunities" if not closed_too else "no opportunities"]
    head = ["ID", "STATE", "SYMBOL", "BUY", "SELL", "NET", "PEAK", "PROFIT", "QTY", "OPEN FOR"]
    if closed_too:
        head.append("CLOSED")
    rows = [head]
    for e in events:
        row = [
            e["id"],
            e["event"],
            e["symbol"],
            f"{e['buyExchange']} {e['buyPrice']}",
            f"{e['sellExchange']} {e['sellPrice']}",
            signed_pct(e["netSpreadPct"]),
            signed_pct(e["peakNetSpreadPct"]),
            money(e["profit"], e["currency"]),
            f"{e['quantity']:g}",
            duration(e["durationMs"] / 1000),
        ]
        if closed_too:
            row.append(e.get("closeReason") or "")
        rows.append(row)
    return table(rows, right={5, 6, 7, 8, 9})


class TopView:
    """State behind ``arbctl subscribe --top``: the latest quote per (symbol, exchange) and the
    open opportunities, rendered as one table per symbol."""

    def __init__(self, symbols: Sequence[str]) -> None:
        self.symbols = list(symbols)
        self.quotes: dict[str, dict[str, Json]] = {s: {} for s in symbols}
        self.opportunities: dict[str, Json] = {}

    def update(self, event: Json) -> None:
        kind = event.get("type")
        if kind == "price":
            self.quotes.setdefault(event["symbol"], {})[event["exchange"]] = event
        elif kind == "arbitrage":
            if event["event"] == "close":
                self.opportunities.pop(event["id"], None)
            else:
                self.opportunities[event["id"]] = event

    def lines(self, now: float) -> list[str]:
        """The whole view; ``now`` is the wall-clock time in seconds (ages use receive time)."""
        out: list[str] = [f"arbctl top  {time.strftime('%H:%M:%S', time.localtime(now))}"]
        for symbol in sorted(self.quotes):
            quotes = self.quotes[symbol]
            out.append("")
            out.append(symbol)
            if not quotes:
                out.append("  no quotes yet")
                continue
            rows = [["", "EXCHANGE", "BID", "ASK", "BID SIZE", "ASK SIZE", "AGE"]]
            for exchange in sorted(quotes):
                q = quotes[exchange]
                rows.append(
                    [
                        "",
                        exchange,
                        q["bid"],
                        q["ask"],
                        q["bidSize"],
                        q["askSize"],
                        age(max(0.0, now - q["receivedNs"] / 1e9)),
                    ]
                )
            out.extend(table(rows, right={2, 3, 4, 5, 6}))
            out.append(f"  {self._gross(quotes)}")
            out.append(f"  {self._net(symbol)}")
        return out

    @staticmethod
    def _gross(quotes: Mapping[str, Json]) -> str:
        """The widest cross-exchange spread from the quotes alone (before fees)."""
        best: tuple[float, str, str] | None = None
        for buy, q_buy in quotes.items():
            for sell, q_sell in quotes.items():
                ask, bid = float(q_buy["ask"]), float(q_sell["bid"])
                if buy != sell and ask > 0:
                    spread = (bid - ask) / ask * 100
                    if best is None or spread > best[0]:
                        best = (spread, buy, sell)
        if best is None:
            return "gross spread: needs quotes from two exchanges"
        spread, buy, sell = best
        return f"best gross spread {signed_pct(spread)}  (buy {buy}, sell {sell}; before fees)"

    def _net(self, symbol: str) -> str:
        matching = [
            o
            for o in self.opportunities.values()
            if symbol in (o["symbol"], o["buySymbol"], o["sellSymbol"])
        ]
        if not matching:
            return "best net spread: no open opportunity (below the open threshold after fees)"
        o = max(matching, key=lambda e: e["netSpreadPct"])
        return (
            f"best net spread {signed_pct(o['netSpreadPct'])}  (buy {o['buyExchange']}, "
            f"sell {o['sellExchange']}; profit {money(o['profit'], o['currency'])}, "
            f"qty {o['quantity']:g})"
        )
