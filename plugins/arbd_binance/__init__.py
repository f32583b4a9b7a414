"""arbd_binance: the Binance spot exchange plugin.

``adapter.py`` is the Sans-I/O adapter (combined streams, SUBSCRIBE frames), ``book.py`` the
documented REST-snapshot order-book procedure, ``instruments.py`` the exchangeInfo parser,
``wire.py`` the message shapes and their decoders; ``plugin.py`` registers the adapter through
arbd's hooks (entry point ``binance = "arbd_binance.plugin"``).
"""
