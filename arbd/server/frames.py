"""Server-to-client WebSocket framing for the fan-out path: pure, no I/O.

Every market event goes to many clients, so it is framed once (by the hub, through
``Hub.subscribe(wire=text_frame)``) and the same bytes are written to every client. Server frames
are never masked and arbd negotiates no extension, so a text frame is a 2-, 4- or 10-byte header
(RFC 6455 section 5.2) followed by the payload. Building it here costs one small ``bytes``
concatenation; ``websockets.frames.Frame.serialize`` does the same job with more checks and is
several times slower per message (``benchmarks/fanout.py`` measures both).

Control frames (pongs, closes) and the handshake go through the websockets Sans-I/O
``ServerProtocol`` as usual: they are rare and need its state machine.
"""

from __future__ import annotations

import struct
from typing import Final

_SHORT: Final = [bytes((0x81, n)) for n in range(126)]
"""Headers (FIN + text opcode, length) of payloads shorter than 126 bytes, built once."""
_HEADER16: Final = struct.Struct("!BBH").pack
_HEADER64: Final = struct.Struct("!BBQ").pack


def text_frame(payload: bytes) -> bytes:
    """One unmasked, unfragmented WebSocket text frame carrying ``payload`` (UTF-8 JSON)."""
    n = len(payload)
    if n < 126:
        return _SHORT[n] + payload
    if n < 65536:
        return _HEADER16(0x81, 126, n) + payload
    return _HEADER64(0x81, 127, n) + payload
