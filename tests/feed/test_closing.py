"""Frames queued while the peer's close frame is being handled (found by the soak: the
library's ``InvalidState`` escaped the connection's sender and ended the whole daemon)."""

from __future__ import annotations

import pytest
import trio

from arbd.errors import PeerClosed
from arbd.feed.transport import RECEIVE_SIZE, WebSocketClient, connect, make_tcp_opener
from arbd.model import Book
from arbd.testing.fake import open_fake
from arbd_simplex.fake import SimplexFake

from .conftest import running, wait_until


async def read_until_closed(client: WebSocketClient) -> None:
    while True:  # until the reader side reports the close
        client.feed(await client.stream.receive_some(RECEIVE_SIZE))


async def test_sending_on_a_closing_connection_is_peer_closed():
    async with open_fake(SimplexFake()) as fake:
        client = await connect(
            fake.ws_url("/ws"), make_tcp_opener(), max_size=2**20, connect_timeout=5
        )
        try:
            conn = await fake.wait_connected()
            conn.close(1001, "going away")
            with trio.fail_after(5), pytest.raises(PeerClosed):
                await read_until_closed(client)
            assert client.closed
            with pytest.raises(PeerClosed, match="closed by peer with code 1001"):
                client.send_text('{"op":"ping","ts":1}')
        finally:
            await client.close()


async def test_a_resync_request_racing_the_peers_close_fails_only_the_connection(virtual_time):
    """One read holds a book update revealing a gap (the session queues unsubscribe and
    subscribe frames) and the close frame behind it: the connection fails with PeerClosed and
    the feed reconnects; nothing escapes to the daemon."""
    async with open_fake(SimplexFake()) as fake:
        async with running(fake, channels=("book",)) as h:
            conn = await fake.wait_connected()
            with trio.fail_after(10):
                await fake.wait_for(lambda: "book:BTC-USDT" in conn.subscriptions)
            await fake.pump(3)
            await wait_until(lambda: h.of(Book))
            fake.skip_sequence("BTC/USDT")
            fake.emit_round()  # lost
            fake.emit_round()  # reveals the gap
            conn.close(1001, "going away")  # queued behind it: one write
            with trio.fail_after(20):
                await fake.wait_for(lambda: fake.connection_count == 2)
            assert h.ctx.reconnects.get("peer_closed") == 1
