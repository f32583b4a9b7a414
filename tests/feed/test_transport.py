"""The WebSocket transport over TLS (test CA from trustme) and its header parsing."""

from __future__ import annotations

import ssl
from functools import partial

import pytest
import trio
import trustme

from arbd.errors import ConnectFailed
from arbd.feed.transport import RECEIVE_SIZE, connect, make_tcp_opener, parse_retry_after
from arbd_simplex.fake import SimplexFake


async def serve_tls(fake: SimplexFake, ca: trustme.CA, nursery: trio.Nursery) -> int:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    listeners = await trio.open_ssl_over_tcp_listeners(0, server_context, host="127.0.0.1")
    await nursery.start(partial(trio.serve_listeners, fake.handle_stream, listeners))
    return int(listeners[0].transport_listener.socket.getsockname()[1])


async def test_wss_with_a_trusted_certificate_exchanges_frames():
    ca = trustme.CA()
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    fake = SimplexFake()
    async with trio.open_nursery() as nursery:
        port = await serve_tls(fake, ca, nursery)
        client = await connect(
            f"wss://localhost:{port}/ws",
            make_tcp_opener(client_context),
            max_size=2**20,
            connect_timeout=5,
        )
        client.send_text('{"op":"ping","ts":42}')
        await client.flush()
        messages = []
        with trio.fail_after(5):
            while not messages:
                messages = client.feed(await client.stream.receive_some(RECEIVE_SIZE))
        assert messages == [(b'{"op":"pong","ts":42}', True)]
        await client.close()
        nursery.cancel_scope.cancel()


async def test_wss_with_an_untrusted_certificate_is_refused():
    ca = trustme.CA()
    fake = SimplexFake()
    async with trio.open_nursery() as nursery:
        port = await serve_tls(fake, ca, nursery)
        # The system trust store does not know the test CA.
        with pytest.raises(ConnectFailed, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
            await connect(
                f"wss://localhost:{port}/ws", make_tcp_opener(), max_size=None, connect_timeout=5
            )
        nursery.cancel_scope.cancel()


async def test_bad_urls_and_refused_ports_are_connect_failures():
    with pytest.raises(ConnectFailed, match="invalid WebSocket URL"):
        await connect("http://example/ws", make_tcp_opener(), max_size=None, connect_timeout=1)
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    await listener.aclose()
    with pytest.raises(ConnectFailed, match="cannot connect"):
        await connect(
            f"ws://127.0.0.1:{port}/ws", make_tcp_opener(), max_size=None, connect_timeout=1
        )


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("7", 7.0), (" 2.5 ", 2.5), ("-3", 0.0), ("soon", None), ("", None), (None, None)],
)
def test_retry_after_delta_seconds(header, seconds):
    assert parse_retry_after(header) == seconds


def test_retry_after_http_date_in_the_past_is_zero():
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
