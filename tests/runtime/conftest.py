"""A daemon against simplex fakes over loopback, configured from a real TOML file."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import pytest
import trio

from arbd.config import load_config
from arbd.daemon import Daemon
from arbd.model import CHANNELS
from arbd.plugins import PluginRegistry, load_plugins
from arbd.testing.fake import FakeConnection
from arbd_simplex.adapter import SimplexAdapter
from arbd_simplex.fake import SimplexFake


class MirrorAdapter(SimplexAdapter):
    """The simplex adapter under a second id: a second exchange from one fake protocol."""

    spec = msgspec.structs.replace(SimplexAdapter.spec, id="mirror", name="Mirror")


@pytest.fixture(scope="module")
def registry() -> PluginRegistry:
    registry = load_plugins(env={"ARBD_LOAD_PLUGINS": "simplex"})
    registry.exchanges["mirror"] = MirrorAdapter
    return registry


def subs(native: str) -> set[str]:
    """What a simplex fake connection subscribed to for one symbol on every channel."""
    return {f"{channel}:{native}" for channel in CHANNELS}


def config_text(
    fakes: Mapping[str, SimplexFake],
    symbols: Mapping[str, Sequence[str]],
    *,
    top: str = "",
    arbitrage: str = "",
    exchange_extra: Mapping[str, str] | None = None,
) -> str:
    """A config with one section per exchange in ``symbols`` (pointed at its fake)."""
    lines = [
        top,
        "[server]\nenabled = false\n[metrics]\nenabled = false",
        "[feed]\nbackoff_base = 0.2\nbackoff_cap = 2.0\nconnect_timeout = 2.0\nrest_timeout = 2.0",
        f"[arbitrage]\nmin_updates = 1\nmin_duration = 0.0\n{arbitrage}",
    ]
    for exchange, wanted in symbols.items():
        fake = fakes[exchange]
        quoted = ", ".join(f'"{s}"' for s in wanted)
        lines.append(
            f"[exchanges.{exchange}]\nsymbols = [{quoted}]\n"
            f'ws_url = "{fake.adapter_ws_url()}"\nrest_url = "{fake.rest_url}"\n'
            + (exchange_extra or {}).get(exchange, "")
        )
    return "\n".join(lines) + "\n"


def make_daemon(path: Path, text: str, registry: PluginRegistry) -> Daemon:
    path.write_text(text)
    return Daemon(load_config(path), registry, config_path=path)


@asynccontextmanager
async def running(daemon: Daemon) -> AsyncIterator[Daemon]:
    """Run ``daemon`` for the duration of the block; stop it with ``request_stop``."""
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        yield daemon
        daemon.request_stop()


async def closed_politely(fake: SimplexFake, conn: FakeConnection) -> None:
    """Wait until ``conn`` is gone, then check arbd closed it politely (code 1000)."""
    with trio.fail_after(10):
        await fake.wait_for(lambda: conn.closed)
    assert conn.close_code == 1000
