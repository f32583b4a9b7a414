"""Where the control socket lives. Pure: the environment and the uid are parameters.

The daemon binds the first candidate; ``arbctl`` tries every candidate in order, because it often
runs in another environment than the daemon (an operator's shell has ``$XDG_RUNTIME_DIR`` but not
the service's ``$RUNTIME_DIRECTORY``). Precedence:

1. ``control.socket`` from the config file (or ``arbctl --socket``): an explicit choice wins.
2. ``$RUNTIME_DIRECTORY/control.sock``: set by systemd for a unit with ``RuntimeDirectory=``
   (a colon-separated list when several are configured: the first is used).
3. ``$XDG_RUNTIME_DIR/arbd/control.sock``: the user's runtime directory (``/run/user/<uid>``).
4. ``/tmp/arbd-<uid>/control.sock``: nothing else is known (containers, bare root shells). The
   directory is created mode 0700 and must belong to the daemon's user.

``arbctl`` also looks at ``/run/arbd/control.sock`` (what a unit with ``RuntimeDirectory=arbd``
gets) after 3, since an operator's shell never has the service's ``$RUNTIME_DIRECTORY``.

Only the standard library is imported here: ``arbctl`` imports this module on every run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import NamedTuple

SOCKET_NAME = "control.sock"
SYSTEMD_DIR = "/run/arbd"
"""Where systemd puts ``RuntimeDirectory=arbd``; arbctl looks there too."""

MAX_PATH_BYTES = 107
"""``sun_path`` holds 108 bytes on Linux, one of which is the terminating NUL."""


class SocketLocation(NamedTuple):
    path: str
    source: str
    """Where the path came from, for messages: ``control.socket``, ``$RUNTIME_DIRECTORY``, ..."""


def candidate_paths(
    configured: str,
    env: Mapping[str, str],
    uid: int,
    *,
    for_client: bool = False,
    tmp: str = "/tmp",  # noqa: S108 - the last resort, checked for ownership before use
) -> list[SocketLocation]:
    """Every place to look for the socket, best first. With ``configured`` set, only that.

    The daemon binds ``candidate_paths(...)[0]``; a client tries them all in order
    (``for_client=True`` adds the systemd default directory).
    """
    if configured:
        return [SocketLocation(configured, "control.socket")]
    found: list[SocketLocation] = []
    runtime = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime:
        found.append(SocketLocation(os.path.join(runtime, SOCKET_NAME), "$RUNTIME_DIRECTORY"))
    xdg = env.get("XDG_RUNTIME_DIR", "")
    if xdg:
        found.append(SocketLocation(os.path.join(xdg, "arbd", SOCKET_NAME), "$XDG_RUNTIME_DIR"))
    if for_client:
        systemd = SocketLocation(os.path.join(SYSTEMD_DIR, SOCKET_NAME), "systemd default")
        if all(f.path != systemd.path for f in found):
            found.append(systemd)
    if not found or for_client:
        found.append(SocketLocation(os.path.join(tmp, f"arbd-{uid}", SOCKET_NAME), "fallback"))
    return found


def resolve_socket_path(configured: str, env: Mapping[str, str], uid: int) -> SocketLocation:
    """The path the daemon binds (the first candidate)."""
    return candidate_paths(configured, env, uid)[0]


def path_problem(path: str) -> str | None:
    """Why ``path`` cannot be a Unix socket path, or None."""
    if not os.path.isabs(path):
        return "the control socket path must be absolute"
    size = len(os.fsencode(path))
    if size > MAX_PATH_BYTES:
        return f"the control socket path is too long for a Unix socket ({size} bytes, at most 107)"
    return None


def configured_socket(config_text: str) -> str:
    """``control.socket`` from a config file's TOML text, without validating the rest (arbctl
    needs only this key, and the daemon already validated the file it runs with).

    Raises ``ValueError`` with a one-line reason when the TOML or the key is malformed.
    """
    import tomllib  # noqa: PLC0415 - only arbctl --config needs it

    try:
        data = tomllib.loads(config_text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"invalid TOML: {exc}") from None
    control = data.get("control", {})
    if not isinstance(control, dict):
        raise ValueError("control: expected a table")
    socket = control.get("socket", "")
    if not isinstance(socket, str):
        raise ValueError("control.socket: expected a string")
    return socket
