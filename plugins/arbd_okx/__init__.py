"""arbd_okx: the built-in OKX v5 exchange plugin (public spot market data).

``adapter.py`` declares the exchange (spec, instruments, connection planning), ``session.py`` is
the Sans-I/O per-connection state machine, ``wire.py`` the message shapes, ``checksum.py`` OKX's
legacy book checksum; ``plugin.py`` registers the adapter through arbd's hooks exactly as a
third-party distribution would (entry point ``okx = "arbd_okx.plugin"``).
"""
