"""arbd_kraken: the built-in Kraken spot exchange plugin (public WebSocket v2).

``adapter.py`` holds the adapter (spec, REST AssetPairs metadata), ``session.py`` the Sans-I/O
connection state machine, ``wire.py`` the msgspec wire shapes, ``checksum.py`` Kraken's exact
decimal text and CRC32 book checksum; ``plugin.py`` registers the adapter through arbd's hooks
(entry point ``kraken = "arbd_kraken.plugin"``).
"""
