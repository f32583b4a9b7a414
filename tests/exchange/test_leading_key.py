import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arbd.exchange.adapter import leading_key, py_leading_key

COMPILED = leading_key is not py_leading_key
IMPLEMENTATIONS = [
    py_leading_key,
    pytest.param(leading_key, marks=pytest.mark.skipif(not COMPILED, reason="not built")),
]


@pytest.mark.parametrize("key_of", IMPLEMENTATIONS)
@pytest.mark.parametrize("make", [bytes, bytearray])
def test_the_routing_key_is_read_off_the_frame_as_hashable_bytes(key_of, make):
    frame = make(b'{"stream":"btcusdt@trade","data":{"e":"trade"}}')
    key = key_of(frame, b'{"stream":"')
    assert key == b"btcusdt@trade"
    assert type(key) is bytes  # a bytearray's slice would not key a dict
    assert {key: 1}[b"btcusdt@trade"] == 1


@pytest.mark.parametrize("key_of", IMPLEMENTATIONS)
def test_a_frame_in_another_key_order_or_another_shape_has_no_key(key_of):
    assert key_of(b'{"data":{},"stream":"btcusdt@trade"}', b'{"stream":"') is None
    assert key_of(b"pong", b'{"arg":') is None
    assert key_of(b'{"ar', b'{"arg":') is None  # shorter than the prefix
    # Cut off before the key ends: no key, the general path explains the frame.
    assert key_of(b'{"stream":"btcusdt@tra', b'{"stream":"') is None
    # A custom stop: OKX's arg object up to its closing brace.
    frame = b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[]}'
    assert key_of(frame, b'{"arg":', b"}") == b'{"channel":"trades","instId":"BTC-USDT"'
    assert key_of(frame, b'{"arg":', b'},"') == b'{"channel":"trades","instId":"BTC-USDT"'


@pytest.mark.skipif(not COMPILED, reason="not built")
def test_the_compiled_key_refuses_text_where_bytes_belong():
    with pytest.raises(TypeError):
        leading_key("text", b"t")
    with pytest.raises(TypeError):
        leading_key(b"text", "t")
    with pytest.raises(TypeError):
        leading_key(b"text", b"t", "x")


def _few_bytes(max_size):
    """Bytes of a three-letter alphabet, so that prefixes and stops do occur in frames."""
    return st.lists(st.sampled_from(b'a"}'), max_size=max_size).map(bytes)


@pytest.mark.skipif(not COMPILED, reason="not built")
@given(
    data=st.one_of(_few_bytes(40), st.binary(max_size=40)),
    prefix=_few_bytes(4),
    stop=_few_bytes(3),
    bytearray_frame=st.booleans(),
)
def test_the_compiled_key_is_the_python_one(data, prefix, stop, bytearray_frame):
    frame = bytearray(data) if bytearray_frame else data
    assert leading_key(frame, prefix, stop) == py_leading_key(frame, prefix, stop)
    assert leading_key(prefix + data, prefix, stop) == py_leading_key(prefix + data, prefix, stop)


def test_the_compiled_key_is_built_when_ci_requires_it():
    # .ci/run sets ARBD_REQUIRE_COMPILED: a silent fallback would be a packaging bug.
    if os.environ.get("ARBD_REQUIRE_COMPILED"):
        assert COMPILED
