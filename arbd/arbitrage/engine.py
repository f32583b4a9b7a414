"""The arbitrage engine: a hub processor turning quotes and books into ``arbitrage`` events.

Use::

    engine = ArbitrageEngine(config.arbitrage, fees, lot_size)
    hub.add_processor(engine)                  # engine(batch) -> extra events, synchronously
    every ~100 ms: hub.publish(engine.tick(clock.wall_ns()))
    on stop:       hub.publish(engine.close_all("shutdown"))

The engine reads no clock. Its "now" is the latest local receive time it has seen (``received_ns``
of quotes, books, trades and candles; ``timestamp`` of status events) or been given by
:meth:`tick`, so a replay driven by recorded receive times gives the same events on every run.
Time only moves forward.

Per update of a leg (a ``price`` quote or a ``book`` of one exchange and symbol), in
O(legs in its quote group), never over all pairs or all symbols:

1. each pending or open opportunity with that leg is re-judged on its own two legs (O(1) each);
2. the group is scanned once for the usable leg with the lowest effective ask and the one with
   the highest effective bid on a different exchange (the best two of each side are kept, so
   the two best being on the same exchange costs nothing extra); if that pair clears the open
   threshold and is not tracked yet, it becomes a pending opportunity.

Depth walks run only when an event is built (see :mod:`arbd.arbitrage.lifecycle`). Conversion
markets do not trigger scans (one stablecoin tick would rescan every base asset); their rate is
read at the next update of a leg, and :meth:`tick` closes what a stale rate made incomparable.

Exclusions: when a scan skipped unusable legs and the best pair *with* them would have cleared
the open threshold while the usable ones give nothing better, the reasons of that pair's
unusable legs are counted (``status()["excluded"]``, plain ints; one count per scan).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Literal

from arbd.arbitrage.conversion import Converter, QuoteGroups, pair_conversion, stale_conversion
from arbd.arbitrage.fees import gross_spread_pct, net_spread_pct
from arbd.arbitrage.legs import REASONS, Health, Leg
from arbd.arbitrage.lifecycle import (
    Opportunity,
    Sizing,
    Timing,
    build_event,
    decide,
    opportunity_id,
)
from arbd.config import ArbitrageConfig
from arbd.model import Book, Candle, Event, FeedStatus, Quote, Trade

LotLookup = Callable[[str, str], "str | None"]
"""``lot_size(exchange, symbol)``: the lot size as decimal text, ``None`` while unknown."""

Pair = tuple[Leg, Leg, float]
"""(buy leg, sell leg, net spread %)"""


def _no_lots(exchange: str, symbol: str) -> str | None:
    return None


class Group:
    """The legs of one base asset whose quotes share a reference currency."""

    __slots__ = ("key", "legs", "live", "reference", "shared")

    def __init__(self, key: tuple[str, str]) -> None:
        self.key = key
        self.reference = key[1]
        self.legs: list[Leg] = []
        self.live = False
        """Some leg converts its prices through a live market (a slower scan)."""
        self.shared = False
        """Some exchange has two legs here (``BTC/USD`` and ``BTC/USDC`` on one exchange): the
        scan must keep the best two on *different* exchanges (a slower scan)."""


def _top_pair(items: Sequence[tuple[Leg, float, float]]) -> Pair | None:
    """The best (lowest ask, highest bid) pair on two different exchanges among
    ``(leg, ask, bid)`` items whose prices are in one currency."""
    a1: Leg | None = None
    a2: Leg | None = None
    b1: Leg | None = None
    b2: Leg | None = None
    av1 = av2 = math.inf
    bv1 = bv2 = -1.0
    for leg, ask, bid in items:
        if ask < av2:
            if ask < av1:
                if a1 is not None and a1.exchange != leg.exchange:
                    a2, av2 = a1, av1
                a1, av1 = leg, ask
            elif a1 is not None and a1.exchange != leg.exchange:
                a2, av2 = leg, ask
        if bid > bv2:
            if bid > bv1:
                if b1 is not None and b1.exchange != leg.exchange:
                    b2, bv2 = b1, bv1
                b1, bv1 = leg, bid
            elif b1 is not None and b1.exchange != leg.exchange:
                b2, bv2 = leg, bid
    return _choose((a1, av1, a2, av2), (b1, bv1, b2, bv2))


Side = tuple["Leg | None", float, "Leg | None", float]
"""Best and second best leg of one side (on another exchange than the best), with values."""


def _choose(asks: Side, bids: Side) -> Pair | None:
    a1, av1, a2, av2 = asks
    b1, bv1, b2, bv2 = bids
    if a1 is None or b1 is None or av1 == math.inf or bv1 <= 0:
        return None
    if a1.exchange != b1.exchange:
        return a1, b1, net_spread_pct(av1, bv1)
    # The best of both sides is one exchange: the better of (best ask, 2nd bid) and
    # (2nd ask, best bid).
    best: Pair | None = None
    if b2 is not None and bv2 > 0:
        best = (a1, b2, net_spread_pct(av1, bv2))
    if a2 is not None and av2 < math.inf:
        other = (a2, b1, net_spread_pct(av2, bv1))
        if best is None or other[2] > best[2]:
            best = other
    return best


class ArbitrageEngine:
    """Cross-exchange opportunities after fees, depth, quote currency and staleness.

    ``fees``: exchange id -> taker fee in percent (:func:`arbd.arbitrage.fees.taker_fees`);
    markets of an exchange without a fee are never compared. ``lot_size``: looked up lazily,
    when an event is built, so it may start answering ``None`` (instruments not loaded yet).
    Not thread-safe; one trio run owns it, like the hub.
    """

    def __init__(
        self,
        settings: ArbitrageConfig,
        fees: Mapping[str, float],
        lot_size: LotLookup | None = None,
    ) -> None:
        self._fees = dict(fees)
        self._lot_size = lot_size or _no_lots
        self._legs: dict[tuple[str, str], Leg] = {}
        self._by_exchange: dict[str, list[Leg]] = {}
        self._groups: dict[tuple[str, str], Group] = {}
        self._opps: dict[tuple[tuple[str, str], tuple[str, str]], Opportunity] = {}
        self._health = Health()
        self._converters: dict[str, Converter] = {}
        self.now_ns = 0
        # Plain-int counters (metrics read them at scrape time).
        self.excluded = dict.fromkeys(REASONS, 0)
        self.opened = 0
        self.updated = 0
        self.closed: dict[str, int] = {}
        """Closes by reason key (``spread``, ``stale``, ...)."""
        self._configure(settings)

    # -- configuration ------------------------------------------------------------------------

    def _configure(self, settings: ArbitrageConfig) -> None:
        self.settings = settings
        self._timing = Timing.from_config(settings)
        self._sizing = Sizing.from_config(settings)
        self._max_age_ns = round(settings.max_quote_age * 1e9)
        groups = QuoteGroups(
            settings.quote_groups, settings.conversion, settings.conversion_markets
        )
        self._quote_groups = groups
        self._converters = {}
        for currency, reference in groups.reference.items():
            label = "" if currency == reference else "par"
            self._converters[currency] = Converter(currency, reference, label)
        for currency, (exchange, symbol, inverted) in groups.markets.items():
            conv = self._converters[currency]
            conv.label = f"{exchange}:{symbol}"
            conv.inverted = inverted
            conv.market = self._leg(exchange, symbol)

    def reconfigure(
        self, settings: ArbitrageConfig, fees: Mapping[str, float] | None = None
    ) -> list[Event]:
        """Apply new settings (a config reload), keeping every leg's prices, books and health
        and the open opportunities that still qualify; the others close with reason
        ``config``. Returns the events to publish."""
        if fees is not None:
            self._fees = dict(fees)
        self._configure(settings)
        # Regroup every leg under the new quote groups and fees, in first-seen order.
        self._groups = {}
        for leg in list(self._legs.values()):
            leg.conv = self._converter(leg.quote)
            leg.group = None
            fee = self._fees.get(leg.exchange)
            if fee is not None:
                leg.set_fee(fee)
                self._join(leg)
        out: list[Event] = []
        for opp in list(self._opps.values()):
            if opp.buy.group is None or opp.buy.group is not opp.sell.group:
                self._end(opp, "config", out)
            else:
                # Below the new close threshold: closed by the new configuration.
                self._revisit(opp, False, out, spread_reason="config")
        return out

    def remove_markets(self, exchange: str, symbols: Collection[str] | None = None) -> list[Event]:
        """Forget markets unsubscribed at runtime (every market of ``exchange`` when
        ``symbols`` is ``None``): their opportunities close with reason ``config``, their legs
        leave their groups, and their health is forgotten. A live conversion market is kept
        (its converter holds it until :meth:`reconfigure` drops it). Returns the events."""
        out: list[Event] = []
        conversion = {id(conv.market) for conv in self._converters.values()}
        legs = self._by_exchange.get(exchange, [])
        for leg in [leg for leg in legs if symbols is None or leg.symbol in symbols]:
            for opp in tuple(leg.opps):
                self._end(opp, "config", out)
            if id(leg) in conversion:
                continue
            del self._legs[leg.key]
            legs.remove(leg)
            group: Group | None = leg.group  # type: ignore[assignment]
            if group is not None:
                group.legs.remove(leg)
                if not group.legs and self._groups.get(group.key) is group:
                    del self._groups[group.key]
        self._health.forget(exchange, symbols)
        return out

    def _converter(self, quote: str) -> Converter:
        conv = self._converters.get(quote)
        if conv is None:
            conv = self._converters[quote] = Converter(quote, quote, "")
        return conv

    def _add_leg(self, exchange: str, symbol: str) -> Leg | None:
        if "/" not in symbol:
            return None  # not a BASE/QUOTE market: nothing to compare it with
        quote = symbol.partition("/")[2]
        fee = self._fees.get(exchange)
        leg = Leg(exchange, symbol, 0.0 if fee is None else fee, self._converter(quote))
        leg.blocked = self._health.reason(exchange, symbol)
        self._legs[exchange, symbol] = leg
        self._by_exchange.setdefault(exchange, []).append(leg)
        if fee is not None:
            self._join(leg)
        return leg

    def _join(self, leg: Leg) -> None:
        key = self._quote_groups.group_key(leg.symbol)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = Group(key)
        group.shared = group.shared or any(o.exchange == leg.exchange for o in group.legs)
        group.legs.append(leg)
        group.live = group.live or leg.conv.live
        leg.group = group

    # -- the processor ------------------------------------------------------------------------

    def __call__(self, batch: Sequence[Event]) -> list[Event]:
        """The events ``batch`` causes.

        A batch is one socket read: its events share one receive time, so the state after the
        last of them is the market at that instant, and the states in between were never
        observable apart. So quotes and books only record the latest top of book (and book)
        of each leg; the changes are applied, and each touched opportunity and quote group is
        judged once, at the end of the batch or before the next status event. That is what
        lets the engine keep up with a firehose (hundreds of quotes per read, a handful of
        quote groups). It also means ``min_updates`` counts the batches that changed a leg,
        not the quotes in them.
        """
        out: list[Event] = []
        if len(batch) == 1:
            # The usual case at low rates: no bookkeeping for what a batch repeats.
            event = batch[0]
            if type(event) is Quote or type(event) is Book:
                leg = self._update(event)
                if leg is not None:
                    self._judge((leg,), out)
                return out
        tops: dict[tuple[str, str], Quote | Book] = {}
        books: dict[tuple[str, str], Book] = {}
        latest = 0  # the newest receive time of the batch's trades and candles
        for event in batch:
            kind = type(event)
            if kind is Trade or kind is Candle:
                # The most frequent events, which only move the clock: first and cheapest.
                received = event.received_ns  # type: ignore[union-attr]
                if received > latest:  # noqa: PLR1730 - cheaper than max() per event
                    latest = received
            elif type(event) is Quote:
                tops[event.exchange, event.symbol] = event
            elif type(event) is Book:
                key = (event.exchange, event.symbol)
                tops[key] = books[key] = event
            elif type(event) is FeedStatus:
                if tops:
                    self._apply(tops, books, out)
                    tops, books = {}, {}
                self._status(event, out)
        self.now_ns = max(self.now_ns, latest)
        if tops:
            self._apply(tops, books, out)
        return out

    def _leg(self, exchange: str, symbol: str) -> Leg | None:
        leg = self._legs.get((exchange, symbol))
        return leg if leg is not None else self._add_leg(exchange, symbol)

    def _update(self, event: Quote | Book, book: Book | None = None) -> Leg | None:
        """Set the top of book of ``event``'s leg from ``event``, and its book from ``event``
        when it is a book, else from ``book`` (an earlier one of the batch) if given. Returns
        the leg, ``None`` if that market has none."""
        received = event.received_ns
        if received > self.now_ns:  # noqa: PLR1730 - cheaper than max() per event
            self.now_ns = received
        leg = self._legs.get((event.exchange, event.symbol))
        if leg is None:
            leg = self._add_leg(event.exchange, event.symbol)
            if leg is None:
                return None
        if type(event) is Book:
            self._set_book(leg, event)
            bids, asks = event.bids, event.asks
            bid, bid_size = bids[0] if bids else ("", "")
            ask, ask_size = asks[0] if asks else ("", "")
            leg.set_top(bid, ask, bid_size, ask_size, received)
        elif type(event) is Quote:
            if book is not None:
                self._set_book(leg, book)
            leg.set_top(event.bid, event.ask, event.bid_size, event.ask_size, received)
        return leg

    def _set_book(self, leg: Leg, book: Book) -> None:
        leg.set_book((book.bids, book.asks), book.received_ns)
        if leg.blocked is not None:
            # A book is only ever published while valid.
            self._health.book_valid(leg.exchange, leg.symbol)
            leg.blocked = self._health.reason(leg.exchange, leg.symbol)

    def _apply(
        self,
        tops: dict[tuple[str, str], Quote | Book],
        books: dict[tuple[str, str], Book],
        out: list[Event],
    ) -> None:
        """Apply the latest top of book (and book) of each leg, then judge the changed legs."""
        legs = [self._update(event, books.get(key)) for key, event in tops.items()]
        self._judge([leg for leg in legs if leg is not None], out)

    def _judge(self, legs: Sequence[Leg], out: list[Event]) -> None:
        """Re-judge each opportunity with one of ``legs`` once, then scan each of their quote
        groups once (legs outside any group, e.g. conversion-only markets, scan nothing)."""
        if len(legs) == 1:
            # One leg (every quote at low rates): nothing to share, so no bookkeeping.
            leg = legs[0]
            if leg.group is not None:
                for opp in tuple(leg.opps):
                    self._revisit(opp, True, out)
                self._look(leg.group, out)  # type: ignore[arg-type]
            return
        groups: dict[object, None] = {}
        opps: dict[Opportunity, None] = {}
        for leg in legs:
            if leg.group is not None:
                groups[leg.group] = None
                if leg.opps:
                    opps.update(dict.fromkeys(leg.opps))
        for opp in opps:
            if self._opps.get(opp.key) is opp:  # not ended by an earlier revisit
                self._revisit(opp, True, out)
        for group in groups:
            self._look(group, out)  # type: ignore[arg-type]

    def _status(self, event: FeedStatus, out: list[Event]) -> None:
        stamp = event.timestamp * 1_000_000
        self.now_ns = max(self.now_ns, stamp)
        affected = self._health.apply(event)
        if affected is None:
            return
        if isinstance(affected, str):
            legs = list(self._by_exchange.get(affected, ()))
        else:
            found = self._legs.get(affected)
            legs = [found] if found is not None else []
        for leg in legs:
            if event.scope == "book" and event.state != "valid":
                leg.set_book(None)  # never walk an invalid book
            leg.blocked = self._health.reason(leg.exchange, leg.symbol)
            for opp in tuple(leg.opps):
                self._revisit(opp, False, out)

    def _look(self, group: Group, out: list[Event]) -> None:
        """Scan ``group`` for its best usable pair; track it if it clears the open threshold."""
        best, excluded = self._scan(group)
        if excluded:
            self._account(group, best)
        if best is None:
            return
        buy, sell, net = best
        if net < self._timing.open_pct:
            return
        key = (buy.key, sell.key)
        if key in self._opps:
            return
        opp = Opportunity(buy, sell, self.now_ns)
        self._opps[key] = opp
        buy.opps.append(opp)
        sell.opps.append(opp)
        self._revisit(opp, True, out)

    # -- scans --------------------------------------------------------------------------------

    def _scan(self, group: Group) -> tuple[Pair | None, bool]:
        """The best usable pair of ``group`` and whether unusable legs were skipped."""
        if group.live:
            return self._best_live(group)
        if group.shared:
            horizon = self.now_ns - self._max_age_ns
            items = [
                (leg, leg.eff_ask, leg.eff_bid) for leg in group.legs if leg.gate(horizon) is None
            ]
            return _top_pair(items), len(items) < len(group.legs)
        return self._best(group)

    def _best(self, group: Group) -> tuple[Pair | None, bool]:
        """The hot loop, for the usual group: one leg per exchange, no conversion rates.
        Keeps the best two asks and bids (on different exchanges, since every leg is on its
        own exchange) without building a tuple per leg."""
        horizon = self.now_ns - self._max_age_ns
        excluded = False
        a1: Leg | None = None
        a2: Leg | None = None
        b1: Leg | None = None
        b2: Leg | None = None
        av1 = av2 = math.inf
        bv1 = bv2 = -1.0
        for leg in group.legs:
            if leg.blocked is not None or leg.received_ns < horizon:
                excluded = True
                continue
            ask = leg.eff_ask
            if ask < av2:
                if ask < av1:
                    a2, av2, a1, av1 = a1, av1, leg, ask
                else:
                    a2, av2 = leg, ask
            bid = leg.eff_bid
            if bid > bv2:
                if bid > bv1:
                    b2, bv2, b1, bv1 = b1, bv1, leg, bid
                else:
                    b2, bv2 = leg, bid
        if a1 is None or b1 is None or av1 == math.inf or bv1 <= 0:
            return None, excluded
        if a1 is not b1:  # one leg per exchange: different legs are different exchanges
            return (a1, b1, (bv1 - av1) / av1 * 100.0), excluded
        return _choose((a1, av1, a2, av2), (b1, bv1, b2, bv2)), excluded

    def _best_live(self, group: Group) -> tuple[Pair | None, bool]:
        """Like :meth:`_best` for groups priced through live conversion markets: legs whose
        rate is usable are compared in the reference currency; each currency whose rate is
        not is compared only within itself."""
        horizon = self.now_ns - self._max_age_ns
        excluded = False
        main: list[tuple[Leg, float, float]] = []
        apart: dict[str, list[tuple[Leg, float, float]]] = {}
        for leg in group.legs:
            if leg.gate(horizon) is not None:
                excluded = True
                continue
            rate = leg.conv.rate(horizon)
            if rate is None:
                excluded = True  # the cross-currency pairs it would make are excluded
                apart.setdefault(leg.quote, []).append((leg, leg.eff_ask, leg.eff_bid))
            else:
                main.append((leg, leg.eff_ask * rate, leg.eff_bid * rate))
        best: Pair | None = None
        for items in (main, *apart.values()):
            found = _top_pair(items)
            if found is not None and (best is None or found[2] > best[2]):
                best = found
        return best, excluded

    def _account(self, group: Group, best: Pair | None) -> None:
        """Count why the best pair ignoring the gates was not usable, if it would have
        cleared the open threshold and beats what the usable legs give."""
        items = []
        for leg in group.legs:
            rate = leg.conv.last_rate()
            items.append((leg, leg.eff_ask * rate, leg.eff_bid * rate))
        ideal = _top_pair(items)
        if ideal is None or ideal[2] < self._timing.open_pct:
            return
        buy, sell, _ = ideal
        if best is not None and best[0] is buy and best[1] is sell:
            return
        horizon = self.now_ns - self._max_age_ns
        reasons = {buy.gate(horizon), sell.gate(horizon)}
        if isinstance(pair_conversion(buy, sell, horizon), str):
            reasons.add("conversion_stale")
        for reason in reasons:
            if reason is not None:
                self.excluded[reason] += 1

    # -- lifecycle ----------------------------------------------------------------------------

    def _revisit(
        self, opp: Opportunity, counted: bool, out: list[Event], spread_reason: str = "spread"
    ) -> None:
        """Re-judge ``opp`` on its own legs now; ``counted``: one of them just updated."""
        horizon = self.now_ns - self._max_age_ns
        buy, sell = opp.buy, opp.sell
        reason = buy.gate(horizon)
        if reason is not None:
            reason = f"{reason}:{buy.exchange}"
        else:
            reason = sell.gate(horizon)
            if reason is not None:
                reason = f"{reason}:{sell.exchange}"
        if reason is not None:
            self._end(opp, reason, out)
            return
        rates = pair_conversion(buy, sell, horizon)
        if isinstance(rates, str):
            self._end(opp, f"{rates}:{stale_conversion(buy, sell, horizon)}", out)
            return
        buy_rate, sell_rate, _ = rates
        net = net_spread_pct(buy.eff_ask * buy_rate, sell.eff_bid * sell_rate)
        gross = gross_spread_pct(buy.ask * buy_rate, sell.bid * sell_rate)
        opp.observe(net, gross, rates)
        decision = decide(opp, self._timing, self.now_ns, counted)
        if decision is None:
            return
        if decision == "drop":
            self._forget(opp)
        elif decision == "open":
            opp.is_open = True
            opp.id = opportunity_id(opp)
            self.opened += 1
            self._emit(opp, "open", out)
        elif decision == "update":
            self.updated += 1
            self._emit(opp, "update", out)
        else:
            self._end(opp, spread_reason, out)

    def _end(self, opp: Opportunity, reason: str, out: list[Event]) -> None:
        """Close ``opp`` if it is open (publishing why), else just stop tracking it."""
        if opp.is_open:
            key = reason.partition(":")[0]
            self.closed[key] = self.closed.get(key, 0) + 1
            self._emit(opp, "close", out, reason)
        self._forget(opp)

    def _forget(self, opp: Opportunity) -> None:
        del self._opps[opp.key]
        opp.buy.opps.remove(opp)
        opp.sell.opps.remove(opp)

    def _lot(self, leg: Leg) -> str | None:
        if leg.lot is None:
            leg.lot = self._lot_size(leg.exchange, leg.symbol)
        return leg.lot

    def _emit(
        self,
        opp: Opportunity,
        kind: Literal["open", "update", "close"],
        out: list[Event],
        reason: str | None = None,
    ) -> None:
        group: Group = opp.buy.group  # type: ignore[assignment]
        out.append(
            build_event(
                opp,
                kind,
                now_ns=self.now_ns,
                horizon_ns=self.now_ns - self._max_age_ns,
                sizing=self._sizing,
                reference=group.reference if group is not None else opp.buy.quote,
                lots=(self._lot(opp.buy), self._lot(opp.sell)),
                close_reason=reason,
            )
        )
        opp.last_emit_ns = self.now_ns
        opp.last_emit_net = opp.net

    # -- driver-facing ------------------------------------------------------------------------

    def tick(self, now_ns: int) -> list[Event]:
        """Move time to ``now_ns`` and re-judge every tracked opportunity: closes those whose
        legs went stale without a new event, opens pending ones that have held for
        ``min_duration``, emits updates a rate limit held back. Returns the events."""
        self.now_ns = max(self.now_ns, now_ns)
        out: list[Event] = []
        for opp in list(self._opps.values()):
            self._revisit(opp, False, out)
        return out

    def close_all(self, reason: str = "shutdown") -> list[Event]:
        """Close every open opportunity with ``reason`` (and drop the pending ones)."""
        out: list[Event] = []
        for opp in list(self._opps.values()):
            self._end(opp, reason, out)
        return out

    def status(self) -> dict[str, Any]:
        """Plain counters and sizes for ``arbctl`` and metrics."""
        return {
            "legs": len(self._legs),
            "groups": len(self._groups),
            "open": sum(1 for opp in self._opps.values() if opp.is_open),
            "pending": sum(1 for opp in self._opps.values() if not opp.is_open),
            "opened": self.opened,
            "updated": self.updated,
            "closed": dict(self.closed),
            "excluded": dict(self.excluded),
        }

    def open_opportunities(self) -> list[Opportunity]:
        return [opp for opp in self._opps.values() if opp.is_open]

    def best(self, symbol: str) -> tuple[str, str, float] | None:
        """(buy exchange, sell exchange, net spread %) of the best usable pair right now in the
        quote group of ``symbol`` (``BTC/USDT``), whatever the thresholds; ``None`` if fewer
        than two exchanges are usable."""
        group = self._groups.get(self._quote_groups.group_key(symbol))
        if group is None:
            return None
        best, _ = self._scan(group)
        return None if best is None else (best[0].exchange, best[1].exchange, best[2])
