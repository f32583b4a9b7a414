import gc
import os

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from arbd.exchange.book import COMPILED, OrderBook, PySide, Side, WireLevel

# Both implementations of a book side: the compiled one only when it was built.
SIDES = [PySide, pytest.param(Side, marks=pytest.mark.skipif(not COMPILED, reason="not built"))]


def state(side) -> tuple[list[float], list[tuple[str, str]]]:
    return side.keys(), list(side.levels)


def test_snapshot_then_deltas_keep_exact_text_and_order():
    book = OrderBook()
    book.replace(
        bids=[("100.10", "1.0"), ("100.30", "2"), ("100.20", "0.5")],
        asks=[("100.50", "3"), ("100.40", "1.25")],
        sequence=7,
    )
    assert book.top_bids(5) == [("100.30", "2"), ("100.20", "0.5"), ("100.10", "1.0")]
    assert book.top_asks(1) == [("100.40", "1.25")]
    book.apply(bids=[("100.30", "0.00000000"), ("100.25", "4")], asks=[("100.40", "2")], sequence=8)
    assert book.best_bid() == ("100.25", "4")
    assert book.best_ask() == ("100.40", "2")
    assert book.sequence == 8
    assert len(book) == 5


def test_removing_an_absent_level_is_harmless():
    book = OrderBook()
    book.apply(bids=[("1", "0")], asks=[])
    assert len(book) == 0


def test_crossed_and_locked_books_are_detected():
    book = OrderBook()
    book.replace(bids=[("10", "1")], asks=[("11", "1")])
    assert not book.is_crossed()
    book.apply(bids=[("11", "1")], asks=[])
    assert book.is_crossed()  # locked: bid == ask
    book.apply(bids=[("11", "0"), ("12", "1")], asks=[])
    assert book.is_crossed()


def test_truncate_keeps_best_levels():
    book = OrderBook()
    book.replace(
        bids=[(str(p), "1") for p in range(1, 11)], asks=[(str(p), "1") for p in range(20, 30)]
    )
    book.truncate(3)
    assert [p for p, _ in book.top_bids(10)] == ["10", "9", "8"]
    assert [p for p, _ in book.top_asks(10)] == ["20", "21", "22"]


prices = st.decimals(min_value="0.01", max_value="100000", places=2, allow_nan=False)
sizes = st.sampled_from(["0", "0.5", "1", "2.25", "10"])


@given(st.lists(st.tuples(st.booleans(), prices, sizes), max_size=200))
def test_book_matches_a_plain_dict_model(updates):
    book = OrderBook()
    model = {True: {}, False: {}}
    for is_bid, price, size in updates:
        text = str(price)
        if is_bid:
            book.apply(bids=[(text, size)], asks=[])
        else:
            book.apply(bids=[], asks=[(text, size)])
        side = model[is_bid]
        key = float(text)
        if float(size) == 0:
            side.pop(key, None)
        else:
            side[key] = (text, size)
    expected_bids = [model[True][k] for k in sorted(model[True], reverse=True)]
    expected_asks = [model[False][k] for k in sorted(model[False])]
    assert book.top_bids(10_000) == expected_bids
    assert book.top_asks(10_000) == expected_asks


# -- the compiled side update and its Python twin ----------------------------------------------

level_texts = st.lists(
    st.tuples(
        st.one_of(
            st.sampled_from(["100", "100.0", "100.5", "99.75", "101", "0.001", "1e3", "1000"]),
            # exact decimal text of every length, past the compiled fast path's limits too
            st.integers(0, 25).flatmap(
                lambda places: st.decimals(
                    min_value=0, max_value="1e17", allow_nan=False, places=places
                ).map(lambda d: f"{d:f}")
            ),
            st.floats(min_value=0, allow_nan=False, allow_infinity=False).map(repr),
        ),
        st.sampled_from(["0", "0.00000000", "1", "2.50", "0E-8", "3"]),
        st.sampled_from([(), ("0", "4")]),  # OKX levels carry two more items
        st.sampled_from(["tuple", "list", "wire"]),
    ).map(
        lambda t: (
            WireLevel(t[0], t[1])
            if t[3] == "wire"
            else [t[0], t[1], *t[2]]
            if t[3] == "list"
            else (t[0], t[1], *t[2])
        )
    ),
    max_size=20,
)


@pytest.mark.skipif(not COMPILED, reason="C extension not built")
@given(st.booleans(), st.lists(level_texts, max_size=20))
def test_compiled_side_update_equals_the_python_loop(negate, batches):
    compiled, python = Side(negate), PySide(negate)
    for batch in batches:
        compiled.apply(batch)
        python.apply(batch)
        assert state(compiled) == state(python)
        keys, levels = state(compiled)
        assert len(compiled) == len(levels)
        assert keys == sorted(set(keys))
        assert keys == [-float(p) if negate else float(p) for p, _ in levels]
        assert all(type(p) is str and type(s) is str for p, s in levels)
        assert all(type(v) is tuple and len(v) == 2 for v in levels)


@pytest.mark.parametrize("make", SIDES)
def test_a_level_that_is_not_a_number_raises_after_applying_the_ones_before(make):
    # Both are frame errors (arbd.exchange.adapter.FRAME_ERRORS): counted, the frame skipped.
    side = make(False)
    with pytest.raises(ValueError):
        side.apply([("1", "1"), ("x", "1"), ("2", "1")])
    assert side.keys() == [1.0]
    with pytest.raises(ValueError):
        side.apply([("nan", "1")])
    with pytest.raises(IndexError):
        side.apply([("1",)])
    side.apply([WireLevel("1", "0")])
    assert side.keys() == []
    side.apply([WireLevel("1", "1")])
    assert side.levels == [("1", "1")]


@pytest.mark.parametrize("make", SIDES)
def test_a_side_reads_its_keys_ranks_and_truncates(make):
    bids = make(True)
    bids.apply([("100", "1"), ("99.5", "2"), ("101", "3"), ("98", "1")])
    assert bids.levels == [("101", "3"), ("100", "1"), ("99.5", "2"), ("98", "1")]
    assert (bids.key(0), bids.key(-1)) == (-101.0, -98.0)
    assert [bids.rank(k) for k in (-102.0, -101.0, -99.75, -98.0, 0.0)] == [0, 1, 2, 4, 4]
    with pytest.raises(IndexError):
        bids.key(4)
    bids.truncate(2)
    assert (len(bids), bids.keys(), bids.levels) == (
        2,
        [-101.0, -100.0],
        [("101", "3"), ("100", "1")],
    )
    bids.truncate(5)
    assert len(bids) == 2
    bids.apply([("100.5", "1")])  # inserts after truncating keep keys and levels together
    assert bids.keys() == [-101.0, -100.5, -100.0]
    bids.clear()
    assert (len(bids), bids.keys(), bids.levels) == (0, [], [])


@pytest.mark.parametrize("make", SIDES)
def test_bids_cross_asks_when_the_best_bid_reaches_the_best_ask(make):
    bids, asks = make(True), make(False)
    assert not bids.crosses(asks)  # empty sides never cross
    bids.apply([("10", "1")])
    assert not bids.crosses(asks)
    asks.apply([("10.5", "1")])
    assert not bids.crosses(asks)
    bids.apply([("10.5", "1")])
    assert bids.crosses(asks)  # locked
    asks.apply([("10.5", "0"), ("11", "1")])
    bids.apply([("12", "1")])
    assert bids.crosses(asks)
    with pytest.raises(TypeError):
        asks.crosses(bids)


@pytest.mark.skipif(not COMPILED, reason="C extension not built")
def test_a_compiled_side_refuses_work_once_its_levels_were_changed_from_outside():
    side = Side(False)
    side.apply([("1", "1")])
    side.levels.append(("2", "1"))  # only the side may change its levels
    with pytest.raises(RuntimeError, match="changed from outside"):
        side.apply([("3", "1")])
    side.clear()  # what an adapter does to a book it cannot trust: a fresh start
    side.apply([("3", "1")])
    assert (side.keys(), side.levels) == ([3.0], [("3", "1")])


@pytest.mark.skipif(not COMPILED, reason="C extension not built")
def test_compiled_levels_of_text_are_not_tracked_by_the_garbage_collector():
    # Two strings cannot form a reference cycle; tracked, every young collection would walk
    # each new level (thousands between two collections on a busy daemon).
    side = Side(True)
    side.apply([("10", "1"), ["11", "2"]])
    side.apply_raw(msgspec.Raw(b'[["12","3"]]'))
    assert len(side.levels) == 3
    assert not any(gc.is_tracked(level) for level in side.levels)


# Plain decimal text of any length: long digit runs, leading zeros, up to 25 decimals, around
# 2^53 (the compiled parser's exact-integer limit), with or without a sign.
decimal_texts = st.builds(
    lambda sign, whole, frac: f"{sign}{whole}{'.' if frac is not None else ''}{frac or ''}",
    st.sampled_from(["", "-"]),
    st.one_of(st.from_regex(r"[0-9]{1,20}", fullmatch=True), st.just("9007199254740993")),
    st.one_of(st.none(), st.from_regex(r"[0-9]{0,25}", fullmatch=True)),
)


@pytest.mark.skipif(not COMPILED, reason="C extension not built")
@given(decimal_texts, decimal_texts)
def test_compiled_numbers_are_exactly_what_float_reads(price, size):
    """The compiled loop's own decimal parser must give float(text), bit for bit, and call a
    size zero exactly when float() does: the book's order and its removals depend on it."""

    def update(side, raw: bool):
        return side.apply_raw(_raw_side(price, size)) if raw else side.apply([(price, size)])

    for raw in (False, True):
        side = Side(False)
        if float(size) < 0:  # no exchange means a negative size: refused like a non-number
            with pytest.raises(ValueError, match="size"):
                update(side, raw)
            continue
        assert update(side, raw) in (None, True)
        if float(size) == 0:
            assert state(side) == ([], [])
        else:
            assert state(side) == ([float(price)], [(price, size)])


def _raw_side(price: str, size: str) -> msgspec.Raw:
    return msgspec.Raw(f'[["{price}","{size}"]]'.encode())


def test_the_compiled_update_is_built_when_ci_requires_it():
    # .ci/run sets ARBD_REQUIRE_COMPILED: a CI machine has a compiler, so a silent fallback
    # to the Python loop (4x slower books) would be a packaging bug.
    if os.environ.get("ARBD_REQUIRE_COMPILED"):
        assert COMPILED


# -- sides straight from the frame's JSON -----------------------------------------------------

raw_levels = st.lists(
    st.tuples(
        st.one_of(
            st.sampled_from(["100", "100.0", "100.5", "99.75", "1e3", "0.001"]),
            st.decimals(min_value=0, max_value="1e9", allow_nan=False, places=4).map(
                lambda d: f"{d:f}"
            ),
        ),
        st.sampled_from(["0", "0.00000000", "1", "2.50", "3"]),
        st.sampled_from(["", ',"0","4"', ", 7", ',"x",null,true']),  # OKX's extra items, or others
        st.sampled_from(["", " ", "\n  "]),  # whitespace wherever JSON allows it
    ),
    max_size=20,
)


def side_json(levels: list[tuple[str, str, str, str]]) -> bytes:
    items = [f'[{ws}"{p}"{ws},{ws}"{s}"{extra}{ws}]' for p, s, extra, ws in levels]
    return ("[" + ", ".join(items) + " ]").encode()


@pytest.mark.skipif(not COMPILED, reason="C extension not built")
@given(st.booleans(), st.lists(raw_levels, max_size=10))
def test_a_side_read_from_its_json_equals_the_python_loop(negate, batches):
    compiled, python = Side(negate), PySide(negate)
    for batch in batches:
        raw = msgspec.Raw(side_json(batch))
        assert compiled.apply_raw(raw) is True
        python.apply_raw(raw)
        assert state(compiled) == state(python)
        assert all(type(p) is str and type(s) is str for p, s in compiled.levels)


@pytest.mark.parametrize("make", SIDES)
@pytest.mark.parametrize(
    "raw",
    [b"", b"{}", b'[["1"]]', b'[["1",1]]', b'[["1","1"]', b'[["1","1"]] x', b'[["1","1"],]'],
)
def test_a_malformed_side_is_a_value_error(make, raw):
    with pytest.raises(ValueError):
        make(False).apply_raw(msgspec.Raw(raw))


def test_escaped_text_takes_the_general_decode():
    book = OrderBook()
    book.apply_raw(msgspec.Raw(b'[["\\u0031", "2"]]'), msgspec.Raw(b'[["3","1","0","9"]]'), 5)
    assert (book.top_bids(5), book.top_asks(5), book.sequence) == ([("1", "2")], [("3", "1")], 5)


# -- an update that fails half-way ------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [("x", "1"), ("inf", "1"), ("NaN", "1"), ("64000.5", "-1"), ("64000.5", "nan"), ("1", "1e400")],
)
@pytest.mark.parametrize("raw", [False, True])
def test_a_failed_update_empties_the_book_and_forgets_its_sequence(bad, raw):
    """Levels before the bad one would be in and the rest not: no state the exchange had. The
    book is emptied and its sequence forgotten, so the adapter's next sequence (or checksum)
    check fails and resyncs it instead of publishing a half-applied book."""
    book = OrderBook()
    book.replace([("100", "1"), ("99", "2")], [("101", "1")], sequence=7)
    bids = [("100", "5"), ("98", "1"), bad]
    if raw:
        with pytest.raises(ValueError, match=r"price|size|float"):
            book.apply_raw(msgspec.Raw(msgspec.json.encode(bids)), msgspec.Raw(b"[]"), 8)
    else:
        with pytest.raises(ValueError, match=r"price|size|float"):
            book.apply(bids, [], 8)
    assert len(book) == 0
    assert book.sequence is None
