"""Random local clients of the daemon's WebSocket server, for soak and chaos runs.

One :class:`HealthyClient` stays connected for the whole run, subscribed to every market's
``price`` and ``book`` plus ``arbitrage`` and ``status``, and reads as fast as it can. For each
``price``/``book`` event it receives it looks up when the hub published that event
(:meth:`InvariantChecker.published_at`) and records the server's delay, in a histogram for
"some other client is stalled right now" and one for "none is". ``lag`` notices (events the
server dropped for it) are counted the same way. Invariant 7 compares the two.

:func:`run_clients` starts it and then, at seeded random times, short-lived clients that
``subscribe`` (random subsets, read a while, close), ``stall`` (subscribe to everything and
stop reading for a while; then resume or disconnect), send ``garbage`` (each invalid message
must get an ``error`` reply and leave the connection open: a ``ping`` after it gets ``pong``)
or ``churn`` (connect and vanish without a close). Every wait is bounded.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import msgspec
import trio

from arbd.testing.client import HandshakeRefused, ProbeClient, ProbeClosed, open_probe

BEHAVIOURS: Final = ("subscribe", "stall", "garbage", "churn")
BAD_MESSAGES: Final = (
    "{not json",
    "[1, 2, 3]",
    '{"action": "fly"}',
    '{"action": "subscribe", "symbols": ["NOPE/NOPE"]}',
    '{"action": "subscribe", "channels": ["weather"]}',
    '{"action": "subscribe", "exchanges": ["nowhere"]}',
    '{"action": "subscribe", "symbol": ["BTC/USDT"]}',
    '{"action": "ping", "id": {"nested": true}}',
)
"""Client messages the server must answer with ``error`` and survive."""


class LatencyBuckets:
    """A log-bucketed histogram of delays in seconds (1 µs .. 100 s, 20 buckets a decade):
    constant memory however long the run; percentiles are the bucket's upper bound."""

    PER_DECADE: Final = 20
    LOW: Final = 1e-6

    def __init__(self) -> None:
        self.counts = [0] * (8 * self.PER_DECADE + 2)
        self.total = 0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        index = 0
        if seconds > self.LOW:
            index = min(len(self.counts) - 1, 1 + int(math.log10(seconds / self.LOW) * 20))
        self.counts[index] += 1
        self.total += 1
        self.max = max(self.max, seconds)

    def percentile(self, q: float) -> float:
        """Upper bound of the bucket holding the ``q`` quantile (0 when empty)."""
        if not self.total:
            return 0.0
        rank = max(1, math.ceil(q * self.total))
        seen = 0
        for index, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                if index == 0:
                    return self.LOW
                return min(self.max, self.LOW * 10 ** (index / self.PER_DECADE))
        return self.max


@dataclass
class ClientLog:
    """What the local clients saw; read by the soak report (invariant 7 and client rows)."""

    calm: LatencyBuckets = field(default_factory=LatencyBuckets)
    """The healthy client's server delays while no other client was stalled."""
    stalled: LatencyBuckets = field(default_factory=LatencyBuckets)
    """The same while at least one other client was stalled."""
    received: dict[bool, int] = field(default_factory=lambda: {False: 0, True: 0})
    dropped: dict[bool, int] = field(default_factory=lambda: {False: 0, True: 0})
    """Events the server told the healthy client it dropped (``lag``), by "stalled"."""
    healthy_disconnects: list[str] = field(default_factory=list)
    stalls_now: int = 0
    started: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BEHAVIOURS, 0))
    stallers_closed_by_server: int = 0
    bad_messages: int = 0
    bad_answered: int = 0
    bad_failures: list[str] = field(default_factory=list)
    refused: int = 0
    connect_failures: list[str] = field(default_factory=list)


class _Msg(msgspec.Struct):
    type: str
    exchange: str = ""
    symbol: str = ""
    received_ns: int = msgspec.field(name="receivedNs", default=0)
    dropped: int = 0


_decode = msgspec.json.Decoder(_Msg).decode
_CHANNELS: Final = {"price": "price", "book": "book"}

PublishedAt = Callable[[str, str, str, int], "float | None"]
"""``(channel, exchange, symbol, receivedNs) -> when the hub published it`` (or None)."""


async def healthy_client(url: str, published_at: PublishedAt, log: ClientLog) -> None:
    """Read everything until cancelled; reconnects (and records it) if the server drops it."""
    while True:
        try:
            async with open_probe(url) as probe:
                probe.send_text(
                    '{"action":"subscribe","channels":["price","book","arbitrage","status"]}'
                )
                while True:
                    message = await probe.receive()
                    now = trio.current_time()
                    stalled = log.stalls_now > 0
                    msg = _decode(message)
                    channel = _CHANNELS.get(msg.type)
                    if channel is not None:
                        log.received[stalled] += 1
                        at = published_at(channel, msg.exchange, msg.symbol, msg.received_ns)
                        if at is not None:
                            (log.stalled if stalled else log.calm).add(now - at)
                    elif msg.type == "lag":
                        log.dropped[stalled] += msg.dropped
        except (ProbeClosed, HandshakeRefused, OSError, trio.TooSlowError) as exc:
            log.healthy_disconnects.append(f"{trio.current_time():.1f}: {exc!r}")
            await trio.sleep(1.0)


async def _read_for(probe: ProbeClient, seconds: float) -> None:
    with trio.move_on_after(seconds):
        while True:
            await probe.receive()


async def _subscriber(url: str, rng: random.Random, markets: Mapping[str, Sequence[str]]) -> None:
    exchanges = rng.sample(sorted(markets), rng.randint(1, len(markets)))
    symbols = sorted({s for ex in exchanges for s in markets[ex]})
    request = {
        "action": "subscribe",
        "exchanges": exchanges,
        "symbols": rng.sample(symbols, rng.randint(1, min(5, len(symbols)))),
        "channels": rng.sample(["price", "trades", "book", "candles"], rng.randint(1, 4)),
        "id": 1,
    }
    async with open_probe(url) as probe:
        probe.send_text(json.dumps(request))
        await _read_for(probe, rng.uniform(2.0, 20.0))
        if rng.random() < 0.5:
            probe.send_text('{"action":"unsubscribe","id":2}')
            await _read_for(probe, 1.0)
        await probe.close()


async def _staller(url: str, rng: random.Random, log: ClientLog) -> None:
    async with open_probe(url) as probe:
        probe.send_text('{"action":"subscribe","id":1}')
        await _read_for(probe, 1.0)
        log.stalls_now += 1
        try:
            await trio.sleep(rng.uniform(5.0, 60.0))  # reads nothing: the server must cope
        finally:
            log.stalls_now -= 1
        if rng.random() < 0.5:
            try:
                await _read_for(probe, 5.0)
            except ProbeClosed:
                log.stallers_closed_by_server += 1
                return
        await trio.aclose_forcefully(probe.stream)


async def _garbage(url: str, rng: random.Random, log: ClientLog) -> None:
    async with open_probe(url) as probe:
        for bad in rng.sample(BAD_MESSAGES, rng.randint(1, 3)):
            log.bad_messages += 1
            probe.send_text(bad)
            probe.send_text('{"action":"ping","id":"alive"}')
            got_error = got_pong = False
            with trio.move_on_after(10.0):
                while not got_pong:
                    reply = json.loads(await probe.receive())
                    got_error = got_error or reply.get("type") == "error"
                    got_pong = reply.get("type") == "pong" and reply.get("id") == "alive"
            if got_error and got_pong:
                log.bad_answered += 1
            else:
                log.bad_failures.append(f"{bad!r}: error={got_error} pong={got_pong}")
        await probe.close()


async def _churn(url: str, rng: random.Random) -> None:
    async with open_probe(url) as probe:
        if rng.random() < 0.5:
            probe.send_text('{"action":"subscribe","id":1}')
            await probe.flush()
        await trio.aclose_forcefully(probe.stream)


async def run_clients(
    url: str,
    markets: Mapping[str, Sequence[str]],
    rng: random.Random,
    published_at: PublishedAt,
    log: ClientLog,
    *,
    interval: float = 5.0,
    max_clients: int = 8,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The healthy client, plus a random short-lived client every ~``interval`` s (at most
    ``max_clients`` at once) until cancelled."""
    running = 0

    async def one(behaviour: str, seed: int) -> None:
        nonlocal running
        running += 1
        own = random.Random(seed)
        try:
            with trio.move_on_after(120.0):
                if behaviour == "subscribe":
                    await _subscriber(url, own, markets)
                elif behaviour == "stall":
                    await _staller(url, own, log)
                elif behaviour == "garbage":
                    await _garbage(url, own, log)
                else:
                    await _churn(url, own)
        except HandshakeRefused:
            log.refused += 1
        except (OSError, trio.TooSlowError) as exc:  # the server did not accept the connection
            log.connect_failures.append(f"{trio.current_time():.1f}: {exc!r}")
        except ProbeClosed:
            if behaviour == "garbage":
                log.bad_failures.append("closed by the server")
        finally:
            running -= 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(healthy_client, url, published_at, log)
        task_status.started()
        while True:
            await trio.sleep(rng.expovariate(1.0 / interval))
            if running < max_clients:
                behaviour = rng.choice(BEHAVIOURS)
                log.started[behaviour] += 1
                nursery.start_soon(one, behaviour, rng.getrandbits(32))
