import pytest

from arbd.exchange.adapter import leading_key


@pytest.mark.parametrize("make", [bytes, bytearray, lambda b: memoryview(b).tobytes()])
def test_the_routing_key_is_read_off_the_frame_as_hashable_bytes(make):
    frame = make(b'{"stream":"btcusdt@trade","data":{"e":"trade"}}')
    key = leading_key(frame, b'{"stream":"')
    assert key == b"btcusdt@trade"
    assert type(key) is bytes  # a bytearray's slice would not key a dict
    assert {key: 1}[b"btcusdt@trade"] == 1


def test_a_frame_in_another_key_order_or_another_shape_has_no_key():
    assert leading_key(b'{"data":{},"stream":"btcusdt@trade"}', b'{"stream":"') is None
    assert leading_key(b"pong", b'{"arg":') is None
    # A custom stop: OKX's arg object up to its closing brace.
    frame = b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[]}'
    assert leading_key(frame, b'{"arg":', b"}") == b'{"channel":"trades","instId":"BTC-USDT"'
