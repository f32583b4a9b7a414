from arbd.exchange.book import OrderBook
from arbd.testing.market import ExchangeBook, MarketSimulator, fmt_units


def run(seed: int, steps: int = 300):
    sim = MarketSimulator(seed=seed)
    sim.add_symbol("BTC/USDT", 64000.0)
    book = ExchangeBook(sim, "BTC/USDT", tick="0.01", lot="0.0001", depth=20, seed=seed)
    updates = []
    for i in range(1, steps + 1):
        sim.advance(i * 0.1)
        updates.append(book.step(i * 0.1))
    return book, updates


def test_same_seed_same_market():
    _, a = run(1)
    _, b = run(1)
    _, c = run(2)
    assert a == b
    assert a != c


def test_updates_replayed_on_a_snapshot_reproduce_the_book_and_never_cross():
    sim = MarketSimulator(seed=3)
    sim.add_symbol("ETH/USDT", 3200.0, volatility=1e-3)
    fake = ExchangeBook(sim, "ETH/USDT", tick="0.01", lot="0.001", depth=10, seed=3)
    book = OrderBook()
    bids, asks = fake.snapshot()
    book.replace(bids, asks)
    for i in range(1, 500):
        sim.advance(i * 0.2)
        update = fake.step(i * 0.2)
        book.apply(update.bids, update.asks)
        assert not book.is_crossed()
        assert (book.top_bids(10), book.top_asks(10)) == fake.snapshot()
        for price, size, side in update.trades:
            assert side in ("buy", "sell")
            assert len(price.split(".")[1]) == 2 and len(size.split(".")[1]) == 3


def test_exchanges_mostly_agree_but_dislocate_now_and_then():
    sim = MarketSimulator(seed=5)
    sim.add_symbol("BTC/USDT", 64000.0)
    a = ExchangeBook(sim, "BTC/USDT", tick="0.01", lot="0.0001", depth=5, seed=10)
    b = ExchangeBook(
        sim, "BTC/USDT", tick="0.1", lot="0.001", depth=5, offset_bps=2.0, lag=0.3, seed=11
    )
    gaps = []
    for i in range(1, 5000):
        sim.advance(i * 0.1)
        a.step(i * 0.1)
        b.step(i * 0.1)
        mid_a = (float(a.best()[0][0]) + float(a.best()[1][0])) / 2
        mid_b = (float(b.best()[0][0]) + float(b.best()[1][0])) / 2
        gaps.append(abs(mid_a - mid_b) / mid_a * 10_000)
    gaps.sort()
    assert gaps[len(gaps) // 2] < 10  # the median gap is a few bps
    assert gaps[-1] > 15  # and dislocations beyond typical fees do happen


def test_exact_decimal_text():
    assert fmt_units(6400010, 2) == "64000.10"
    assert fmt_units(5, 4) == "0.0005"
    assert fmt_units(12, 0) == "12"
