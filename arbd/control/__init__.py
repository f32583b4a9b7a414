"""The Unix-socket control channel: ``arbctl`` talks to a running daemon through it.

``paths`` (where the socket lives) and ``client`` import only the standard library, so ``arbctl``
starts fast; ``protocol`` is the pure wire format; ``server`` is the trio I/O shell the daemon
starts; ``target`` is the interface the daemon offers the server. Import the submodules directly:
this package imports nothing on purpose.
"""
