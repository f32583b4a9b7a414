"""Hostile input to the local WebSocket protocol and the control channel
(``arbd.testing.hostile_local``): real messages mutated, random bytes, random JSON. Every input
must get one well-formed reply (an ``error`` naming the field, on one line) and leave the
connection working. ``corpus/server/`` and ``corpus/control/`` keep inputs that once broke it.
"""

from __future__ import annotations

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from arbd.testing.hostile_local import check_client_message, check_control_line, check_line_buffer
from arbd.testing.mutate import mutate

from .strategies import Draws, corpus, fuzz_settings, hang_guard, random_inputs

SYMBOLS = ["BTC/USDT", "ETH/USD", "BTCUSDT"]

# Real messages, as docs/protocol.md shows them.
CLIENT_MESSAGES = [
    b'{"action":"subscribe","symbols":["BTC/USDT"],"exchanges":["binance"],'
    b'"channels":["price","book"],"id":1}',
    b'{"action":"unsubscribe","symbols":["ETH/USD"],"channels":["trades"],"id":"u1"}',
    b'{"action":"subscribe","channels":["arbitrage","status"]}',
    b'{"action":"ping","id":2}',
]
CONTROL_LINES = [
    b'{"cmd":"status","id":1}',
    b'{"cmd":"subscribe","symbols":["BTC/USDT"],"exchanges":["binance"],"channels":["price"],'
    b'"id":2}',
    b'{"cmd":"opportunities","all":true,"id":3}',
    b'{"cmd":"symbols","op":"add","exchange":"kraken","symbols":["SOL/USD"],"id":4}',
    b'{"cmd":"reload","id":5}',
    b'{"cmd":"stop","id":"s"}',
]


def _mutated(draws: Draws, seeds: list[bytes]) -> bytes:
    return mutate(seeds[draws.integer(0, len(seeds) - 1)], draws, SYMBOLS)


@fuzz_settings(300)
@given(data=st.data())
def test_mutated_client_messages(data):
    with hang_guard():
        reply = check_client_message(_mutated(Draws(data), CLIENT_MESSAGES))
    event(type(reply).__name__)


@fuzz_settings(100)
@given(message=random_inputs)
def test_random_client_messages(message):
    with hang_guard():
        check_client_message(message)


@fuzz_settings(300)
@given(data=st.data())
def test_mutated_control_lines(data):
    with hang_guard():
        answer = check_control_line(_mutated(Draws(data), CONTROL_LINES))
    event(type(answer).__name__)


@fuzz_settings(100)
@given(line=random_inputs)
def test_random_control_lines(line):
    with hang_guard():
        check_control_line(line)


@fuzz_settings(100)
@given(chunks=st.lists(st.binary(max_size=200) | st.sampled_from([b"\n", b"\r\n", b"x" * 300])))
def test_control_line_splitting(chunks):
    check_line_buffer(chunks)


@pytest.mark.parametrize("path", corpus("server"), ids=lambda p: p.name)
def test_server_corpus(path):
    check_client_message(path.read_bytes())


@pytest.mark.parametrize("path", corpus("control"), ids=lambda p: p.name)
def test_control_corpus(path):
    check_control_line(path.read_bytes())
