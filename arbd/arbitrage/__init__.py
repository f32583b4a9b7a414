"""The cross-exchange arbitrage detector: pure and synchronous, fed by the hub.

Modules, in the order data flows through them:

``legs``        one market per (exchange, symbol): top of book, book, fee, freshness gates
``conversion``  quote groups: which markets are compared, and through which rate
``fees``        taker fees per exchange and spreads after them
``engine``      the hub processor: per-update scan of a quote group, ``tick``, ``status``
``lifecycle``   pending -> open -> update -> close, ids, the ``arbitrage`` event
``depth``       the depth walk: tradable size, VWAPs, profit and the profit curve

Nothing here imports trio or a socket library or reads a clock: time comes in with the events
and with ``engine.tick(now_ns)``. The package imports nothing itself, so that reading the quote
groups of a config (``conversion``) does not load the engine (``arbd --help`` stays fast).
"""
