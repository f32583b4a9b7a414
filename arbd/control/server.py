"""The control channel's I/O shell: a Unix socket served from the daemon's trio run.

Start it with ``path = await nursery.start(serve_control, config.control, target)``; it reports
the socket path it bound once clients can connect, and removes the socket file when cancelled.

Binding (``_bind``), in order:

1. the path is resolved (``arbd.control.paths``) and checked (absolute, fits ``sun_path``);
2. an existing file there is probed: a socket whose connect is refused is stale (its daemon
   died without cleaning up) and is replaced; a socket that accepts belongs to a live daemon
   and is never stolen (``ConfigError`` naming the path); anything else is left alone (error);
3. bind, chmod 0660, and only then listen: until ``listen()`` a connect is refused, so nobody
   reaches the socket while it still has the umask's mode.

Every connection's peer is checked with ``SO_PEERCRED`` (:func:`peer_allowed`): the daemon's
own uid, root, or a member of the socket file's group. The file mode already makes the kernel
refuse everyone else; the check keeps that true when an operator loosens the mode by hand.

A connection reads request lines and answers each in order (``arbd.control.protocol``). A
``subscribe`` turns it into a stream: one hub subscriber (bounded, ``conflate`` policy) and one
writer that sends whatever is buffered in one write, until the client closes its end.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
import struct
from collections.abc import Mapping
from typing import NamedTuple, cast

import trio

from arbd.config import ControlConfig
from arbd.control import protocol
from arbd.control.paths import SocketLocation, path_problem, resolve_socket_path
from arbd.control.target import ControlTarget
from arbd.errors import ArbdError, ConfigError
from arbd.hub import Filter, HubSubscriber

log = logging.getLogger("arbd.control")

SOCKET_MODE = 0o660
_PROBE_TIMEOUT = 2.0
"""A live daemon whose accept queue is full may not answer the stale-socket probe at once;
not answering within this long counts as alive (never steal a socket on a guess)."""
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


# -- peer check (pure) ------------------------------------------------------------------------


class PeerCredentials(NamedTuple):
    pid: int
    uid: int
    gid: int
    groups: frozenset[int] = frozenset()
    """Supplementary groups (from ``/proc/<pid>/status``; empty when unknown)."""


def peer_allowed(peer: PeerCredentials, *, owner_uid: int, socket_gid: int) -> bool:
    """May this peer use the control socket? The daemon's uid, root, or the socket's group."""
    return peer.uid in (owner_uid, 0) or peer.gid == socket_gid or socket_gid in peer.groups


def groups_from_proc_status(text: str) -> frozenset[int]:
    """The ``Groups:`` line of ``/proc/<pid>/status`` as gids."""
    for line in text.splitlines():
        if line.startswith("Groups:"):
            return frozenset(int(g) for g in line.split()[1:] if g.isdigit())
    return frozenset()


def _read_peer(sock: trio.socket.SocketType) -> PeerCredentials:
    pid, uid, gid = _UCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    )
    return PeerCredentials(pid, uid, gid)


def _with_groups(peer: PeerCredentials) -> PeerCredentials:
    try:
        with open(f"/proc/{peer.pid}/status", encoding="ascii", errors="replace") as f:
            return peer._replace(groups=groups_from_proc_status(f.read()))
    except OSError:
        return peer  # the peer exited already: it is judged on its primary group alone


def _socket_gid(path: str, fallback: int) -> int:
    try:
        return os.stat(path).st_gid  # read per connection: an operator may chgrp the socket
    except OSError:
        return fallback


# -- binding ----------------------------------------------------------------------------------


def _config_error(location: SocketLocation, problem: str) -> ConfigError:
    """``<socket path>: <problem>``: the path is what the operator needs to look at."""
    return ConfigError(problem, path=location.path)


def _prepare_directory(location: SocketLocation, uid: int) -> None:
    directory = os.path.dirname(location.path)
    try:
        if location.source == "fallback":
            # A shared /tmp: the directory must be ours and closed to others, or another user
            # could have placed it (and a socket of their own) there first.
            os.makedirs(directory, mode=0o700, exist_ok=True)
            info = os.lstat(directory)
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid or info.st_mode & 0o022:
                problem = f"{directory} is not a directory owned by uid {uid} and closed to others"
                raise _config_error(location, problem)
        elif location.source == "$XDG_RUNTIME_DIR":
            os.makedirs(directory, mode=0o700, exist_ok=True)
        elif location.source == "control.socket":
            os.makedirs(directory, mode=0o750, exist_ok=True)  # group members must traverse it
    except OSError as exc:
        raise _config_error(location, f"cannot create {directory}: {exc.strerror}") from None


async def _clear_stale(location: SocketLocation) -> None:
    """Remove a socket file no daemon listens on; refuse to touch a live one or a non-socket."""
    path = location.path
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise _config_error(
            location, "exists and is not a socket; not removing it (set control.socket elsewhere)"
        )
    probe = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with probe:
        try:
            with trio.move_on_after(_PROBE_TIMEOUT):
                await probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)
            log.warning("removed stale control socket %s (no daemon was listening)", path)
            return
        except FileNotFoundError:
            return  # removed meanwhile
        except OSError as exc:
            raise _config_error(
                location, f"cannot probe the control socket: {exc.strerror}"
            ) from None
    raise _config_error(
        location,
        "another arbd is listening on this control socket "
        "(stop it, or set control.socket to another path)",
    )


async def _bind(location: SocketLocation, uid: int) -> trio.socket.SocketType:
    problem = path_problem(location.path)
    if problem is not None:
        raise _config_error(location, problem)
    _prepare_directory(location, uid)
    await _clear_stale(location)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await sock.bind(location.path)
        os.chmod(location.path, SOCKET_MODE)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise _config_error(location, "another arbd bound this control socket first") from None
        raise _config_error(
            location, f"cannot listen on the control socket: {exc.strerror}"
        ) from None
    except BaseException:
        sock.close()  # cancelled while binding (a stop requested during start-up)
        raise
    return sock


def _remove_if_ours(path: str, identity: tuple[int, int]) -> None:
    """Unlink the socket file unless another daemon has replaced it since."""
    try:
        info = os.lstat(path)
        if (info.st_dev, info.st_ino) == identity:
            os.unlink(path)
    except FileNotFoundError:
        pass  # already gone: nothing to clean up


# -- serving ----------------------------------------------------------------------------------


async def serve_control(
    config: ControlConfig,
    target: ControlTarget,
    *,
    path: str | None = None,
    env: Mapping[str, str] | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the control channel until cancelled. ``path`` overrides the configured location
    (tests); ``env`` replaces ``os.environ`` for resolving it. Reports the bound path."""
    uid = os.getuid()
    if path is not None:
        location = SocketLocation(path, "control.socket")
    else:
        location = resolve_socket_path(config.socket, os.environ if env is None else env, uid)
    sock = await _bind(location, uid)
    info = os.stat(location.path)
    server = _ControlServer(config, target, location.path, uid, info.st_gid)
    listener = trio.SocketListener(sock)
    try:
        async with trio.open_nursery() as nursery:
            log.info("control channel listening on %s", location.path)
            task_status.started(location.path)
            await trio.serve_listeners(server.handle, [listener], handler_nursery=nursery)
    finally:
        _remove_if_ours(location.path, (info.st_dev, info.st_ino))
        sock.close()


class _Wakeup:
    """Set by the hub when a subscriber's buffer turns non-empty; awaited by its writer."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = trio.Event()


class _ControlServer:
    def __init__(
        self, config: ControlConfig, target: ControlTarget, path: str, uid: int, gid: int
    ) -> None:
        self.config = config
        self.target = target
        self.path = path
        self.uid = uid
        self.gid = gid
        self.connections = 0

    async def handle(self, stream: trio.SocketStream) -> None:
        """One connection. Nothing raised here may reach ``serve_listeners``: that would end
        the control channel, and the daemon with it, for one client's sake."""
        try:
            await self._handle(stream)
        except* (trio.BrokenResourceError, trio.ClosedResourceError) as group:
            # The client left, possibly mid-write (a subscribe stream's writer then sees it in
            # its nursery, so it may arrive wrapped in an exception group).
            log.debug("control client went away: %r", group.exceptions[0])
        except* Exception:
            log.exception("control connection failed")

    async def _handle(self, stream: trio.SocketStream) -> None:
        peer = _read_peer(stream.socket)
        socket_gid = _socket_gid(self.path, self.gid)
        if not peer_allowed(peer, owner_uid=self.uid, socket_gid=socket_gid):
            peer = _with_groups(peer)
        if not peer_allowed(peer, owner_uid=self.uid, socket_gid=socket_gid):
            log.warning("control: refused uid %d (pid %d)", peer.uid, peer.pid)
            message = (
                f"uid {peer.uid} may not use {self.path} "
                f"(allowed: uid {self.uid}, root, group {socket_gid})"
            )
            await stream.send_all(protocol.error(None, "permission_denied", message))
            return
        if self.connections >= self.config.max_connections:
            message = f"already {self.connections} control connections (control.max_connections)"
            await stream.send_all(protocol.error(None, "too_many_connections", message))
            return
        self.connections += 1
        try:
            await self._serve_requests(stream)
        finally:
            self.connections -= 1

    async def _serve_requests(self, stream: trio.SocketStream) -> None:
        lines = protocol.LineBuffer()
        while data := await stream.receive_some(65536):
            for line in lines.feed(data):
                if not line.strip():
                    continue
                request = protocol.parse_request(line)
                if isinstance(request, protocol.ErrorReply):
                    await stream.send_all(protocol.encode(request))
                elif isinstance(request, protocol.SubscribeRequest):
                    checked = protocol.subscription(request, self.target.markets())
                    if isinstance(checked, protocol.ErrorReply):
                        await stream.send_all(protocol.encode(checked))
                        continue
                    # From here on the connection is a stream; later lines are ignored.
                    await self._stream_events(stream, request.id, *checked)
                    return
                else:
                    await self._answer(stream, request)
            if lines.too_long:
                message = f"request line longer than {protocol.MAX_LINE} bytes"
                await stream.send_all(protocol.error(None, "line_too_long", message))
                return

    async def _answer(self, stream: trio.SocketStream, request: protocol.Request) -> None:
        try:
            reply = protocol.ok(request.id, await self._execute(request))
        except ConfigError as exc:
            reply = protocol.error(request.id, "config_error", exc.one_line())
        except ArbdError as exc:
            log.warning("control: %s failed: %s", type(request).__name__, exc)
            reply = protocol.error(request.id, "internal_error", str(exc))
        except Exception as exc:
            # A bug in the daemon must not take the control channel (or the daemon) down:
            # the traceback goes to the log, the client gets one line, the connection stays.
            log.exception("control: %s failed", type(request).__name__)
            reply = protocol.error(request.id, "internal_error", f"{type(exc).__name__}: {exc}")
        await stream.send_all(reply)
        if isinstance(request, protocol.StopRequest):
            self.target.request_stop()  # after the reply, so the client learns it was taken

    async def _execute(self, request: protocol.Request) -> object:
        target = self.target
        if isinstance(request, protocol.StatusRequest):
            return target.status()
        if isinstance(request, protocol.OpportunitiesRequest):
            return target.opportunities(include_closed=request.all)
        if isinstance(request, protocol.SymbolsRequest):
            change = target.add_symbols if request.op == "add" else target.remove_symbols
            changed = await change(request.exchange, request.symbols)
            return protocol.SymbolsChanged(
                exchange=request.exchange, op=request.op, changed=changed
            )
        if isinstance(request, protocol.ReloadRequest):
            return protocol.Reloaded(changes=await target.reload())
        if isinstance(request, protocol.StopRequest):
            return protocol.Stopping()
        # Subscribe is never answered here: it turns the connection into a stream.
        raise TypeError(f"no handler for {type(request).__name__}")

    async def _stream_events(
        self,
        stream: trio.SocketStream,
        request_id: protocol.RequestId,
        filter: Filter,
        active: protocol.Subscribed,
    ) -> None:
        wakeup = _Wakeup()
        # The snapshot is in the buffer before anything else can be published, and the reply
        # goes out before the buffer is first drained: reply, then state, then live events.
        sub = self.target.hub.subscribe(
            filter,
            capacity=self.config.buffer,
            policy="conflate",
            wake=wakeup.set,
            encoded=True,
            snapshot=True,
        )
        try:
            await stream.send_all(protocol.ok(request_id, active))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_until_eof, stream, nursery.cancel_scope)
                await self._write_events(stream, request_id, sub, wakeup)
                nursery.cancel_scope.cancel()
        finally:
            self.target.hub.unsubscribe(sub)

    async def _write_events(
        self,
        stream: trio.SocketStream,
        request_id: protocol.RequestId,
        sub: HubSubscriber,
        wakeup: _Wakeup,
    ) -> None:
        reported = 0
        while True:
            items = cast(list[bytes], sub.drain())
            if sub.overflowed:
                message = f"more than {sub.capacity} undroppable events waiting (control.buffer)"
                await stream.send_all(protocol.error(request_id, "overflow", message))
                return
            if sub.dropped > reported:
                items.insert(0, protocol.encode(protocol.Lag(dropped=sub.dropped - reported))[:-1])
                reported = sub.dropped
            if items:
                items.append(b"")
                await stream.send_all(b"\n".join(items))
            else:
                await wakeup.wait()


async def _until_eof(stream: trio.SocketStream, scope: trio.CancelScope) -> None:
    """Read (and ignore) what a streaming client sends; its end of the stream ends the stream."""
    try:
        while await stream.receive_some(4096):
            pass
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        log.debug("control stream reader: %r", exc)
    scope.cancel()
