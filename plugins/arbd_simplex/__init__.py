"""arbd_simplex: the "simplex" test exchange, the smallest complete arbd exchange plugin.

``adapter.py`` is the Sans-I/O adapter, ``fake.py`` a fake server speaking the protocol (see
``docs/simplex-protocol.md``), ``plugin.py`` registers both through arbd's hooks, exactly as a
third-party plugin distribution would (entry point ``simplex = "arbd_simplex.plugin"``).
"""
