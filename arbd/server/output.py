"""What one client is owed, in order, as bytes ready for its socket. Synchronous.

Two sources, written in this order: the *outbox* (the handshake response, replies, pongs, and
events moved out of a replaced hub subscriber) and the client's hub subscriber (market events,
already framed by the hub, the same bytes objects for every client). A ``lag`` notice goes in
front of the events when some were lost, at most once per ``LAG_INTERVAL``.

Order: a reply is queued after the events the subscriber already holds (they were published
before the request was read), so a client sees everything in the order it happened. After a
subscription change: events of the old subscriptions, the reply, the snapshot of what the
request names, then live events. Nothing is lost or duplicated in between: all of it runs
synchronously, between two awaits of the one trio run.

Bounds: the subscriber holds at most ``server.buffer`` events (under ``server.slow_policy``);
the outbox more than twice that means a client sends requests without reading the answers, and
it is closed with 1008. The caller passes the time (``now``, trio's clock) in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final, cast

from arbd.hub import Filter, Hub, HubSubscriber
from arbd.server.frames import text_frame
from arbd.server.protocol import lag

if TYPE_CHECKING:
    from arbd.config import ServerConfig

LAG_INTERVAL: Final = 1.0
"""At most one ``lag`` notice per second per client (under ``conflate`` every burst loses some)."""


class ClientOutput:
    """One client's pending output. ``wake`` is called when there is something to write."""

    def __init__(self, hub: Hub, config: ServerConfig, wake: Callable[[], None]) -> None:
        self.hub = hub
        self.config = config
        self.wake = wake
        self.sub: HubSubscriber | None = None
        self.outbox: list[bytes] = []
        self.lost = 0
        """Events lost to the slow-consumer policy since the connection opened."""
        self.sent_messages = 0
        """Events handed to the socket layer (not counting replies)."""
        self.close_request: tuple[int, str] | None = None
        self._reported = 0
        self._counted = 0
        self._last_lag = -LAG_INTERVAL

    def request_close(self, code: int, reason: str) -> None:
        """Close after what is queued; the first request wins."""
        if self.close_request is None:
            self.close_request = (code, reason)

    def queue(self, frames: list[bytes]) -> None:
        self.outbox.extend(frames)
        if len(self.outbox) > 2 * self.config.buffer:
            self.request_close(1008, "not reading")
        self.wake()

    def reply(self, frames: list[bytes], now: float) -> None:
        """Queue replies after the events published before the request."""
        self.queue(self.backlog(now) + frames)

    def resubscribe(
        self, filter: Filter | None, snapshot: Filter | None, replies: list[bytes], now: float
    ) -> None:
        """Replace the hub subscriber (``filter`` None: none), keeping the order described in
        the module docstring; the current state matching ``snapshot`` goes first."""
        frames: list[bytes] = []
        old = self.sub
        if old is not None:
            self.hub.unsubscribe(old)
            frames += self.backlog(now, force_lag=True)
            self._counted = 0
        self.sub = None
        frames += replies
        if filter is not None:
            config = self.config
            sub = self.hub.subscribe(
                filter,
                capacity=config.buffer,
                policy=config.slow_policy,
                wake=self.wake,
                wire=text_frame,
            )
            self.sub = sub
            if snapshot is not None:
                for event in self.hub.state.snapshot(snapshot):
                    if filter.matches(event):
                        sub.offer(event, self.hub.encode_for(sub, event))
        self.queue(frames)

    def detach(self) -> None:
        if self.sub is not None:
            self.hub.unsubscribe(self.sub)

    def _count_lost(self, sub: HubSubscriber) -> None:
        new = sub.dropped - self._counted
        if new:
            self._counted = sub.dropped
            self.lost += new

    def lag_due(self) -> float | None:
        """When a held-back ``lag`` notice may go out (None: nothing to report)."""
        if self.sub is not None:
            self._count_lost(self.sub)
        return self._last_lag + LAG_INTERVAL if self.lost > self._reported else None

    def backlog(self, now: float, *, force_lag: bool = False) -> list[bytes]:
        """What the subscriber holds, oldest first, after a ``lag`` notice when events were
        lost; empties the subscriber. An overflowed subscriber closes the client (1008)."""
        sub = self.sub
        if sub is None or self.close_request is not None:
            return []
        self._count_lost(sub)
        if sub.overflowed:
            self.request_close(1008, f"too slow: more than {sub.capacity} events behind")
            return []
        frames: list[bytes] = []
        unreported = self.lost - self._reported
        if unreported and (force_lag or now - self._last_lag >= LAG_INTERVAL):
            self._reported = self.lost
            self._last_lag = now
            frames.append(text_frame(lag(unreported, self.lost, self.config.slow_policy)))
        items = cast(list[bytes], sub.drain())
        self.sent_messages += len(items)
        return frames + items

    def take(self, now: float) -> list[bytes]:
        """Everything to write now, in order, as a few buffers (often one; write them with one
        ``writev``); empties both sources."""
        sub = self.sub
        if (
            sub is not None
            and not self.outbox
            and sub.dropped == self._counted
            and self.lost == self._reported
            and not sub.overflowed
            and self.close_request is None
        ):
            # The usual case, once per client per flush: only events, none lost.
            parts, count = sub.drain_parts()
            self.sent_messages += count
            return parts
        parts = self.outbox
        self.outbox = []
        data = b"".join(parts + self.backlog(now))
        return [data] if data else []
