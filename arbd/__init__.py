"""arbd: local crypto market-data and cross-exchange arbitrage daemon."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("arbd")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

from arbd.hookspecs import hookimpl

__all__ = ["__version__", "hookimpl"]
