from arbd.feed.handover import Handover
from arbd.model import FeedStatus, Trade


def trade(seq, symbol="BTC/USDT"):
    return Trade(
        exchange="x",
        symbol=symbol,
        price="1",
        size="1",
        side="buy",
        id=str(seq),
        timestamp=0,
        received_ns=0,
        sequence=seq,
    )


def status():
    return FeedStatus(exchange="x", symbol="", scope="connection", state="live", timestamp=0)


def test_sequenced_events_are_delivered_once_in_order_whoever_is_first():
    old, new = object(), object()
    merge = Handover(primary=old)
    out = []
    out += merge.filter(old, [trade(1), trade(2), trade(3)])
    out += merge.filter(new, [trade(2), trade(3), trade(4)])  # new is ahead by one
    out += merge.filter(old, [trade(4), trade(5)])  # old catches up: 4 is a duplicate
    merge.primary = new
    out += merge.filter(new, [trade(5), trade(6)])
    assert [e.sequence for e in out] == [1, 2, 3, 4, 5, 6]
    assert merge.duplicates == 4


def test_symbols_are_tracked_separately():
    old, new = object(), object()
    merge = Handover(primary=old)
    out = merge.filter(old, [trade(10, "BTC/USDT")]) + merge.filter(new, [trade(3, "ETH/USDT")])
    assert [(e.symbol, e.sequence) for e in out] == [("BTC/USDT", 10), ("ETH/USDT", 3)]


def test_unsequenced_events_only_from_primary():
    old, new = object(), object()
    merge = Handover(primary=old)
    assert merge.filter(new, [status()]) == []
    assert len(merge.filter(old, [status()])) == 1
    merge.primary = new
    assert merge.filter(old, [status()]) == []
    assert len(merge.filter(new, [status()])) == 1
