"""A benchmark's helper process (fake exchanges, the subscribers' epoll reader) and its command
pipe: ``target(pipe, *args)`` runs in a spawned process; ``call`` sends a command and waits for
the answer without blocking trio (the blocking ``recv`` goes through a thread)."""

from __future__ import annotations

import multiprocessing
from typing import Any

import trio


class Child:
    def __init__(self, target: Any, *args: Any) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.process = ctx.Process(target=target, args=(child, *args), daemon=True)
        self.process.start()

    async def call(self, *command: Any) -> Any:
        """Send ``command`` (none: just wait for the next answer) and return the answer."""
        if command:
            self.pipe.send(command)
        return await trio.to_thread.run_sync(self.pipe.recv)

    def close(self) -> None:
        """Ask the process to exit; kill it if it has not within 10 s."""
        if self.process.is_alive():
            self.pipe.send(("exit",))
            self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
