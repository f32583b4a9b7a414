"""The local WebSocket server for programs: ``protocol`` (pure) and ``ws`` (I/O).

Import ``serve_websocket`` from ``arbd.server.ws``; this package imports nothing on its own, so
``arbd.config`` and the CLI can use the pure modules without loading trio.
"""
