"""arbd_coinbase: the Coinbase Advanced Trade exchange plugin (public market data).

``adapter.py`` holds the adapter (spec, products list, USDC aliasing), ``session.py`` the
Sans-I/O connection state machine, ``wire.py`` the msgspec wire types and the RFC 3339 parser,
``plugin.py`` the hook registration (entry point ``coinbase = "arbd_coinbase.plugin"``).
"""
