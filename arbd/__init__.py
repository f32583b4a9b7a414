"""arbd: local crypto market-data and cross-exchange arbitrage daemon."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from arbd.hookspecs import hookimpl

    __version__: str

__all__ = ["__version__", "hookimpl"]


def __getattr__(name: str) -> Any:
    # Resolved on first use (PEP 562): importlib.metadata and pluggy cost tens of milliseconds,
    # and `arbctl` imports this package on every run without needing either.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

        try:
            value = version("arbd")
        except PackageNotFoundError:  # running from a source tree that was never installed
            value = "0.0.0+unknown"
        globals()["__version__"] = value
        return value
    if name == "hookimpl":
        from arbd.hookspecs import hookimpl  # noqa: PLC0415

        return hookimpl
    raise AttributeError(f"module 'arbd' has no attribute {name!r}")
