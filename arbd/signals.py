"""Signals for a running daemon: SIGINT/SIGTERM stop it gracefully, SIGHUP reloads its config."""

from __future__ import annotations

import logging
import signal
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import trio

from arbd.errors import ConfigError

if TYPE_CHECKING:
    from arbd.daemon import Daemon

log = logging.getLogger("arbd")

SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def run_until_signal(daemon: Daemon) -> None:
    """Run ``daemon`` until SIGINT/SIGTERM or :meth:`Daemon.request_stop`, then shut down
    gracefully. SIGHUP reloads the configuration (:meth:`Daemon.reload` logs the outcome; a
    bad file keeps the daemon running as it was)."""
    with trio.open_signal_receiver(*SHUTDOWN_SIGNALS, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(handle_signals, daemon, signals)
            await daemon.run()
            nursery.cancel_scope.cancel()


async def handle_signals(daemon: Daemon, signals: AsyncIterator[int]) -> None:
    """Act on each signal received: SIGHUP reloads (in the background, so a slow reload never
    delays a shutdown signal), any other stops the daemon."""
    async with trio.open_nursery() as nursery:
        async for signum in signals:
            if signum == signal.SIGHUP:
                log.info("received SIGHUP; reloading %s", daemon.config_path or "(no config file)")
                nursery.start_soon(_reload_quietly, daemon)
            else:
                log.info("received %s; shutting down", signal.Signals(signum).name)
                daemon.request_stop()


async def _reload_quietly(daemon: Daemon) -> None:
    try:
        await daemon.reload()
    except ConfigError as exc:
        # reload() logged a rejected file; a daemon without one has nothing to reload.
        if not daemon.config_path:
            log.error("reload: %s", exc.one_line())
