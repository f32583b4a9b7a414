"""arbd_bybit: the built-in Bybit v5 public spot exchange plugin.

``adapter.py`` holds the adapter (spec, instruments, topics, connection planning), ``session.py``
the per-connection Sans-I/O state machine, ``wire.py`` the msgspec shapes of Bybit's messages,
``plugin.py`` the registration through arbd's hooks (entry point ``bybit = "arbd_bybit.plugin"``).
"""
