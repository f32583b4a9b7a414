"""The fake exchange server base: HTTP + WebSocket on one port, faults, book-keeping."""

from __future__ import annotations

import httpx
import pytest
import trio
import trio.testing
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from arbd.testing.client import HandshakeRefused, ProbeClosed, open_probe
from arbd.testing.fake import FakeConnection, FakeExchangeServer, open_fake

LIMIT = 10  # seconds: every wait in this file is bounded by this


class Echo(FakeExchangeServer):
    """Echoes text as data frames; "ctl:" messages come back as control frames."""

    def __init__(self) -> None:
        super().__init__()
        self.connected: list[int] = []
        self.disconnected: list[int] = []

    def on_connect(self, conn: FakeConnection) -> None:
        self.connected.append(conn.id)

    def on_disconnect(self, conn: FakeConnection) -> None:
        self.disconnected.append(conn.id)

    def on_message(self, conn: FakeConnection, message: str | bytes) -> None:
        assert isinstance(message, str)
        if message.startswith("ctl:"):
            conn.send_text(message)
        else:
            conn.send_data(message)

    def handle_http(self, method: str, path: str, query: dict[str, str]):  # type: ignore[no-untyped-def]
        if path == "/hello":
            return 200, {"X-Fake": "yes"}, b'{"hello":"%s"}' % query.get("name", "").encode()
        return super().handle_http(method, path, query)


async def test_http_and_websocket_share_one_port() -> None:
    with trio.fail_after(LIMIT):
        async with open_fake(Echo()) as fake, httpx.AsyncClient(base_url=fake.rest_url) as http:
            ok = await http.get("/hello", params={"name": "x", "n": "1"})
            missing = await http.get("/nope")
            async with open_probe(fake.ws_url("/ws?token=t")) as probe:
                probe.send_text("hi")
                assert await probe.receive() == "hi"
                conn = fake.connections[0]
                assert (conn.path, conn.query, conn.received) == ("/ws", {"token": "t"}, ["hi"])
    assert (ok.status_code, ok.json(), ok.headers["x-fake"]) == (200, {"hello": "x"}, "yes")
    assert (missing.status_code, missing.json()) == (404, {"error": "not found"})
    assert fake.http_requests == [("/hello", {"name": "x", "n": "1"}), ("/nope", {})]
    assert fake.connection_count == 1
    assert fake.connected == fake.disconnected == [1]


async def test_http_refusal_with_retry_after_then_recovery() -> None:
    fake = Echo()
    fake.faults.refuse_status = 429
    fake.faults.retry_after = 2
    fake.faults.refuse = "http"
    fake.faults.refuse_times = 1
    with trio.fail_after(LIMIT):
        async with open_fake(fake), httpx.AsyncClient(base_url=fake.rest_url) as http:
            refused = await http.get("/hello")
            served = await http.get("/hello")
            # refuse="http" leaves WebSocket handshakes alone.
            fake.faults.refuse_times = None
            async with open_probe(fake.ws_url()) as probe:
                probe.send_text("ctl:x")
                assert await probe.receive() == "ctl:x"
    assert (refused.status_code, refused.headers["retry-after"]) == (429, "2")
    assert served.status_code == 200
    assert (fake.http_refusals, fake.handshake_refusals) == (1, 0)


async def test_handshake_refusal_with_fractional_retry_after() -> None:
    fake = Echo()
    fake.faults.refuse_status = 429
    fake.faults.retry_after = 0.5
    fake.faults.refuse_times = 2
    with trio.fail_after(LIMIT):
        async with open_fake(fake):
            for _ in range(2):
                with pytest.raises(HandshakeRefused) as refused:
                    async with open_probe(fake.ws_url()):
                        pass
                assert refused.value.status == 429
                assert refused.value.headers["Retry-After"] == "0.5"
            async with open_probe(fake.ws_url()):  # refuse_times used up
                await fake.wait_connected()
    assert (fake.handshake_refusals, fake.connection_count) == (2, 1)


async def test_client_ping_answered_unless_ignored() -> None:
    with trio.fail_after(LIMIT):
        async with open_fake(Echo()) as fake, open_probe(fake.ws_url()) as probe:
            probe.send_ping(b"p1")
            frame = await probe.receive_frame()
            assert (frame.opcode, bytes(frame.data)) == (Opcode.PONG, b"p1")

            fake.faults.ignore_pings = True
            probe.send_ping(b"p2")
            probe.send_text("ctl:after")
            # The echo is written after the (suppressed) pong would have been: pongs are
            # queued while a read is parsed, replies after it.
            assert await probe.receive() == "ctl:after"
            assert probe.pongs == [b"p1"]

            conn = fake.connections[0]
            conn.faults.ignore_pings = False  # per-connection override wins
            probe.send_ping(b"p3")
            assert await probe.receive_frame() == frame.__class__(Opcode.PONG, b"p3")
            assert conn.pings_received == 3


async def test_server_ping_pong_is_counted() -> None:
    with trio.fail_after(LIMIT):
        async with open_fake(Echo()) as fake, open_probe(fake.ws_url()) as probe:
            conn = await fake.wait_connected()
            assert conn.send_ping(b"hb")
            frame = await probe.receive_frame()  # the probe answers it automatically
            assert (frame.opcode, bytes(frame.data)) == (Opcode.PING, b"hb")
            await fake.wait_for(lambda: conn.pongs_received == 1)
            assert conn.pings_sent == 1


async def test_stall_suppresses_data_but_not_control_frames() -> None:
    with trio.fail_after(LIMIT):
        async with open_fake(Echo()) as fake, open_probe(fake.ws_url()) as probe:
            conn = await fake.wait_connected()
            fake.faults.stall = True
            # A pong is queued while the read is parsed, before replies to messages in it:
            # sending the ping first makes the order on the wire certain.
            probe.send_ping(b"alive")
            probe.send_text("data-1")
            probe.send_text("ctl:still-here")
            frame = await probe.receive_frame()
            assert (frame.opcode, bytes(frame.data)) == (Opcode.PONG, b"alive")
            assert await probe.receive() == "ctl:still-here"
            assert (conn.frames_suppressed, conn.data_frames_sent) == (1, 0)
            fake.faults.stall = False
            probe.send_text("data-2")
            assert await probe.receive() == "data-2"  # data-1 was discarded, not buffered


async def test_drop_after_messages_delivers_then_drops() -> None:
    fake = Echo()
    fake.faults.drop_after_messages = 2
    with trio.fail_after(LIMIT):
        async with open_fake(fake), open_probe(fake.ws_url()) as probe:
            conn = await fake.wait_connected()
            for i in range(3):
                fake.send_data(conn, f"m{i}")
            assert [await probe.receive(), await probe.receive()] == ["m0", "m1"]
            with pytest.raises(ProbeClosed) as closed:
                await probe.receive()
            assert closed.value.code is None  # no close frame: an abrupt drop
            await fake.wait_for(lambda: not fake.connections)
    assert conn.dropped
    assert conn.closed
    assert conn.data_frames_sent == 2


async def test_drop_and_close_from_the_server() -> None:
    with trio.fail_after(LIMIT):
        async with open_fake(Echo()) as fake:
            async with open_probe(fake.ws_url()) as probe:
                conn = await fake.wait_connected()
                conn.drop()
                with pytest.raises(ProbeClosed) as dropped:
                    await probe.receive()
                assert dropped.value.code is None
            async with open_probe(fake.ws_url()) as probe:
                conn = await fake.wait_connected()
                conn.close(4000, "bye")
                with pytest.raises(ProbeClosed) as closed:
                    await probe.receive()
                assert closed.value.code == 4000
                await fake.wait_for(lambda: conn.closed)
                assert not conn.dropped
                assert not conn.send_text("too late")  # sends after close are no-ops


async def test_client_close_and_abrupt_disconnect_are_quiet() -> None:
    with trio.fail_after(LIMIT):
        async with open_fake(Echo()) as fake:
            async with open_probe(fake.ws_url()) as probe:
                conn = await fake.wait_connected()
                await probe.close(1000)
            await fake.wait_for(lambda: not fake.connections)
            assert conn.close_code == 1000
            async with open_probe(fake.ws_url()) as probe:
                conn = await fake.wait_connected()
                await probe.stream.aclose()  # no close frame
            await fake.wait_for(lambda: not fake.connections)
            assert conn.close_code is None
            assert fake.connection_count == 2


async def test_garbage_and_oversized_helpers() -> None:
    with trio.fail_after(LIMIT):
        async with open_fake(Echo()) as fake, open_probe(fake.ws_url()) as probe:
            conn = await fake.wait_connected()
            fake.send_garbage(conn)
            fake.send_oversized(conn, 3 * 1024 * 1024)
            fake.send_oversized(conn, 10, text=False)
            assert await probe.receive() == "this is {not json"
            big = await probe.receive()
            assert isinstance(big, str)
            assert len(big) == 3 * 1024 * 1024
            assert await probe.receive() == b"\0" * 10

            fake.faults.garbage_every = 2
            for i in range(4):
                fake.send_data(conn, f"d{i}")
            got = [await probe.receive() for _ in range(6)]
            assert got == ["d0", "this is {not json", "d1", "d2", "this is {not json", "d3"]


async def test_slow_consumer_is_dropped_when_too_much_is_queued() -> None:
    fake = Echo()
    fake.max_pending_bytes = 1000
    with trio.fail_after(LIMIT):
        async with open_fake(fake), open_probe(fake.ws_url()) as probe:
            conn = await fake.wait_connected()
            assert conn.send_text("x" * 600)
            assert not conn.send_text("y" * 600)  # synchronously over the limit
            with pytest.raises(ProbeClosed):  # dropped: queued bytes are discarded too
                await probe.receive()
    assert conn.dropped


async def test_hung_handshake_times_out_on_the_client() -> None:
    fake = Echo()
    fake.faults.hang_handshake = True
    with trio.fail_after(LIMIT):
        async with open_fake(fake):
            with pytest.raises(trio.TooSlowError):
                async with open_probe(fake.ws_url(), handshake_timeout=0.2):
                    pass
    assert fake.connection_count == 0


async def test_leaving_the_block_closes_live_connections() -> None:
    with trio.fail_after(LIMIT):
        async with open_fake(Echo()) as fake, open_probe(fake.ws_url()) as probe:
            async with open_probe(fake.ws_url()):
                async with open_fake(Echo()) as other, open_probe(other.ws_url()) as doomed:
                    await other.wait_connected()
                # `other` is gone: its client sees the stream end.
                with pytest.raises(ProbeClosed):
                    await doomed.receive()
                await fake.wait_connected(2)
            await fake.wait_for(lambda: len(fake.connections) == 1)
            probe.send_text("ctl:ok")
            assert await probe.receive() == "ctl:ok"
    assert fake.port is None
    with pytest.raises(RuntimeError):
        fake.ws_url()


async def test_close_all_waits_for_every_connection() -> None:
    with trio.fail_after(LIMIT):
        async with open_fake(Echo()) as fake:
            async with open_probe(fake.ws_url()) as a, open_probe(fake.ws_url()) as b:
                await fake.wait_connected(2)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(fake.close_all)
                    for probe in (a, b):
                        with pytest.raises(ProbeClosed) as closed:
                            await probe.receive()
                        assert closed.value.code == 1001
            assert fake.connections == []


async def test_bad_http_is_answered_and_closed() -> None:
    with trio.fail_after(LIMIT):
        async with open_fake(Echo()) as fake:
            for request, status in (
                (b"NONSENSE\r\n\r\n", b"400"),
                (b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000, b"431"),
            ):
                stream = await trio.open_tcp_stream("127.0.0.1", fake.port or 0)
                async with stream:
                    await stream.send_all(request)
                    response = b""
                    while chunk := await stream.receive_some(65536):
                        response += chunk
                assert response.split(b" ")[1] == status


async def test_handle_stream_serves_an_in_memory_stream() -> None:
    fake = Echo()
    client, server = trio.testing.memory_stream_pair()
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fake.handle_stream, server)
            await client.send_all(
                b"GET /hello?name=mem HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            response = b""
            while chunk := await client.receive_some(65536):
                response += chunk
            await client.aclose()
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert response.endswith(b'\r\n\r\n{"hello":"mem"}')
    assert b"Connection: close" in response


async def test_websocket_over_an_in_memory_stream_with_an_eager_client() -> None:
    """A client that sends a frame right behind its handshake, all in one write."""
    fake = Echo()
    client_stream, server_stream = trio.testing.memory_stream_pair()
    protocol = ClientProtocol(parse_uri("ws://fake.invalid/ws"))
    protocol.send_request(protocol.connect())
    # The client protocol refuses to send before OPEN, so serialize the frame by hand.
    eager = Frame(Opcode.TEXT, b"eager").serialize(mask=True, extensions=[])
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fake.handle_stream, server_stream)
            await client_stream.send_all(b"".join(protocol.data_to_send()) + eager)
            frames: list[Frame] = []
            while not frames:
                protocol.receive_data(await client_stream.receive_some(65536))
                frames = [e for e in protocol.events_received() if isinstance(e, Frame)]
            assert protocol.state is State.OPEN
            assert (frames[0].opcode, bytes(frames[0].data)) == (Opcode.TEXT, b"eager")
            assert fake.connections[0].received == ["eager"]
            await client_stream.aclose()  # abrupt: the server notices and cleans up
    assert fake.connections == []
    assert fake.connection_count == 1
