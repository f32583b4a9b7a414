"""The flusher's shared join: clients with the same pending frames share one buffer."""

from arbd.server.connection import Flusher


def test_equal_pending_frames_share_one_joined_buffer():
    flusher = Flusher()
    frames = [b"a" * 10, b"b" * 20]
    first = flusher.join(list(frames))
    second = flusher.join(list(frames))
    assert first == b"a" * 10 + b"b" * 20
    assert second is first  # no second copy


def test_different_pending_frames_are_joined_on_their_own():
    flusher = Flusher()
    shared = [b"x", b"y"]
    assert flusher.join(shared) == b"xy"
    assert flusher.join([b"lag", *shared]) == b"lagxy"
    assert flusher.join([b"x"]) == b"x"
    assert flusher.join([]) == b""
