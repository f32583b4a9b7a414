"""arbd_kraken: the built-in Kraken spot exchange plugin (public WebSocket v2).

``adapter.py`` holds the adapter (spec, REST AssetPairs metadata), ``session.py`` the Sans-I/O
connection state machine, ``wire.py`` the msgspec wire shapes, ``checksum.py`` Kraken's exact
decimal text and CRC32 book checksum, ``fake.py`` a fake Kraken (v2 WebSocket and REST AssetPairs)
for tests and ``arbd demo``; ``plugin.py`` registers the adapter and the fake through arbd's hooks
(entry point ``kraken = "arbd_kraken.plugin"``).
"""
