"""A harness running one exchange feed against a simplex fake over real loopback sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec

from arbd.testing.harness import FAST, Harness, run_feed, wait_until
from arbd_simplex.adapter import SimplexAdapter

__all__ = ["FAST", "Harness", "adapter_with", "running", "wait_until"]


def adapter_with(**spec_changes: object) -> type[SimplexAdapter]:
    """A SimplexAdapter subclass whose spec differs (keepalive timings, stale action)."""
    spec = msgspec.structs.replace(SimplexAdapter.spec, **spec_changes)
    return type("TunedSimplex", (SimplexAdapter,), {"spec": spec})


@asynccontextmanager
async def running(
    fake, *, adapter_cls: type[SimplexAdapter] = SimplexAdapter, **options
) -> AsyncIterator[Harness]:
    """Run a simplex feed against ``fake`` for the duration of the block."""
    async with run_feed(fake, adapter_cls, **options) as harness:
        yield harness
