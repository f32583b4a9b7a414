"""The life of an opportunity: pending -> open -> (update)* -> close, and its events.

An :class:`Opportunity` is one (buy leg, sell leg) pair of a quote group. It is created
*pending* when the group's best pair reaches ``open_threshold_pct`` net, and from then on it is
judged on its own two legs only, whatever the group's best pair becomes:

- pending: dropped silently as soon as the net spread is below the open threshold or a leg is
  unusable; *opens* once the spread has held for ``min_duration`` (checked on updates and on
  ticks) or for ``min_updates`` consecutive updates of its legs, whichever comes first.
- open: *closes* when the net spread falls below ``close_threshold_pct`` (reason ``spread``) or
  a leg or its conversion becomes unusable (``stale:<exchange>``, ``book_invalid:<exchange>``,
  ``exchange_down:<exchange>``, ``conversion_stale:<market>``), or on ``shutdown`` and
  ``config``. In between it emits ``update`` when the net spread moved by at least
  ``update_min_change_pct`` since the last event, at most once per ``update_interval``.

The gap between the two thresholds is the hysteresis: a spread wandering between them neither
opens nor closes anything. :func:`decide` is the whole state machine and reads no prices; the
engine computes the spread and carries out the decision.

Ids are a hash of the pair and the time the spread first reached the threshold, so a replay of
the same captures names every opportunity the same way on every run.
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import blake2b
from typing import Literal

from arbd.arbitrage.depth import Levels, PairTerms, lot_multiple, profit_at, walk
from arbd.arbitrage.legs import Leg
from arbd.config import ArbitrageConfig
from arbd.model import Arbitrage, BuySell, ProfitPoint

Decision = Literal["drop", "open", "update", "close"] | None


@dataclass(frozen=True, slots=True)
class Timing:
    """The lifecycle settings in the engine's units (ns, percent)."""

    open_pct: float
    close_pct: float
    min_duration_ns: int
    min_updates: int
    update_interval_ns: int
    update_min_change_pct: float

    @classmethod
    def from_config(cls, config: ArbitrageConfig) -> Timing:
        return cls(
            open_pct=config.open_threshold_pct,
            close_pct=config.close_threshold_pct,
            min_duration_ns=round(config.min_duration * 1e9),
            min_updates=config.min_updates,
            update_interval_ns=round(config.update_interval * 1e9),
            update_min_change_pct=config.update_min_change_pct,
        )


class Opportunity:
    """One pair's state. The engine owns it; events are built from it by :func:`build_event`."""

    __slots__ = (
        "buy",
        "buy_rate",
        "conversion",
        "first_ns",
        "gross",
        "id",
        "is_open",
        "key",
        "last_emit_net",
        "last_emit_ns",
        "lot",
        "lots",
        "net",
        "peak",
        "sell",
        "sell_rate",
        "updates",
    )

    def __init__(self, buy: Leg, sell: Leg, now_ns: int) -> None:
        self.key = (buy.key, sell.key)
        self.buy = buy
        self.sell = sell
        self.first_ns = now_ns
        """When the net spread first reached the open threshold (``openedAt``)."""
        self.updates = 0
        self.is_open = False
        self.id = ""
        self.net = self.gross = self.peak = float("-inf")
        self.buy_rate = self.sell_rate = 1.0
        self.conversion = ""
        self.last_emit_ns = 0
        self.last_emit_net = 0.0
        self.lot: float | None = None
        self.lots: tuple[str | None, str | None] = (None, None)
        """The legs' lot sizes ``lot`` was computed from (they become known lazily)."""

    def observe(self, net: float, gross: float, rates: tuple[float, float, str]) -> None:
        self.net = net
        self.gross = gross
        self.buy_rate, self.sell_rate, self.conversion = rates
        self.peak = max(self.peak, net)


def decide(opp: Opportunity, timing: Timing, now_ns: int, counted: bool) -> Decision:
    """What happens to ``opp`` after its spread was re-evaluated (``opp.observe``) at
    ``now_ns``; ``counted``: the evaluation came from an update of one of its legs (a tick is
    not an update). Leg gates are the caller's: an unusable leg means drop or close."""
    net = opp.net
    if not opp.is_open:
        if net < timing.open_pct:
            return "drop"
        if counted:
            opp.updates += 1
        if opp.updates >= timing.min_updates or now_ns - opp.first_ns >= timing.min_duration_ns:
            return "open"
        return None
    if net < timing.close_pct:
        return "close"
    if (
        now_ns - opp.last_emit_ns >= timing.update_interval_ns
        and abs(net - opp.last_emit_net) >= timing.update_min_change_pct
    ):
        return "update"
    return None


def opportunity_id(opp: Opportunity) -> str:
    material = "|".join((*opp.buy.key, *opp.sell.key, str(opp.first_ns)))
    return blake2b(material.encode(), digest_size=8).hexdigest()


def compared_symbol(opp: Opportunity, reference: str) -> str:
    """The legs' common symbol, else ``BASE/<group reference>``."""
    if opp.buy.symbol == opp.sell.symbol:
        return opp.buy.symbol
    return f"{opp.buy.base}/{reference}"


def _side(leg: Leg, horizon_ns: int, buy: bool) -> tuple[Levels, bool]:
    """The levels to walk for a leg: its book when one is fresh (behind the newer top of book
    of a later quote, if one came), else its top of book alone."""
    top = (leg.ask_text, leg.ask_size) if buy else (leg.bid_text, leg.bid_size)
    if leg.book is None or leg.book_ns < horizon_ns:
        return Levels([top]), False
    bids, asks = leg.book
    if leg.received_ns > leg.book_ns:
        return Levels(asks if buy else bids, top, asks=buy), True
    # The book is the latest word: parse it once for every event built from it.
    if buy:
        if leg.ask_levels is None:
            leg.ask_levels = Levels(asks, asks=True)
        return leg.ask_levels, True
    if leg.bid_levels is None:
        leg.bid_levels = Levels(bids, asks=False)
    return leg.bid_levels, True


@dataclass(frozen=True, slots=True)
class Sizing:
    """What the size and profit figures need from the configuration."""

    threshold_pct: float
    max_notional: float
    sizes: tuple[float, ...]

    @classmethod
    def from_config(cls, config: ArbitrageConfig) -> Sizing:
        return cls(config.open_threshold_pct, config.max_notional, tuple(config.sizes))


def build_event(
    opp: Opportunity,
    kind: Literal["open", "update", "close"],
    *,
    now_ns: int,
    horizon_ns: int,
    sizing: Sizing,
    reference: str,
    lots: tuple[str | None, str | None],
    close_reason: str | None = None,
) -> Arbitrage:
    """The ``arbitrage`` event for ``opp`` now; walks the books (the expensive part, done only
    here, when an event is actually published)."""
    buy, sell = opp.buy, opp.sell
    asks, buy_book = _side(buy, horizon_ns, buy=True)
    bids, sell_book = _side(sell, horizon_ns, buy=False)
    terms = PairTerms(buy.fee_pct, sell.fee_pct, opp.buy_rate, opp.sell_rate)
    if opp.lots != lots:
        opp.lots = lots
        opp.lot = lot_multiple(*lots)
    result = walk(
        asks,
        bids,
        terms,
        threshold_pct=sizing.threshold_pct,
        max_notional=sizing.max_notional,
        lot=opp.lot,
    )
    curve = []
    for size in sizing.sizes:
        profit = profit_at(asks, bids, terms, size)
        curve.append(ProfitPoint(size=size, profit=None if profit is None else round(profit, 8)))
    first_ms = opp.first_ns // 1_000_000
    now_ms = now_ns // 1_000_000
    buy_vwap, sell_vwap = result.buy_vwap, result.sell_vwap
    net = round(opp.net, 6)
    return Arbitrage(
        id=opp.id,
        event=kind,
        symbol=compared_symbol(opp, reference),
        buy_exchange=buy.exchange,
        sell_exchange=sell.exchange,
        buy_symbol=buy.symbol,
        sell_symbol=sell.symbol,
        buy_price=buy.ask_text,
        sell_price=sell.bid_text,
        spread_pct=net,
        net_spread_pct=net,
        gross_spread_pct=round(opp.gross, 6),
        peak_net_spread_pct=round(opp.peak, 6),
        profit=round(result.profit, 8),
        currency=buy.quote if buy.quote == sell.quote else reference,
        quantity=round(result.quantity, 12),
        buy_vwap=None if buy_vwap is None else round(buy_vwap, 10),
        sell_vwap=None if sell_vwap is None else round(sell_vwap, 10),
        size_source="book" if buy_book and sell_book else "top",
        profit_curve=curve,
        conversion=opp.conversion,
        fees=BuySell(buy=buy.fee_pct, sell=sell.fee_pct),
        age_ms=BuySell(
            buy=round((now_ns - buy.received_ns) / 1e6, 3),
            sell=round((now_ns - sell.received_ns) / 1e6, 3),
        ),
        opened_at=first_ms,
        closed_at=now_ms if kind == "close" else None,
        duration_ms=now_ms - first_ms,
        close_reason=close_reason,
        timestamp=now_ms,
    )
