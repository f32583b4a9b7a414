"""Where the control socket lives: one pure resolution shared by the daemon and arbctl."""

from __future__ import annotations

import pytest

from arbd.config import parse_config
from arbd.control.paths import (
    SocketLocation,
    candidate_paths,
    configured_socket,
    path_problem,
    resolve_socket_path,
)
from arbd.errors import ConfigError

ENV = {"RUNTIME_DIRECTORY": "/run/arbd:/run/other", "XDG_RUNTIME_DIR": "/run/user/1000"}


def test_an_explicit_path_wins_over_the_environment():
    assert resolve_socket_path("/srv/arbd.sock", ENV, 1000) == SocketLocation(
        "/srv/arbd.sock", "control.socket"
    )
    assert candidate_paths("/srv/arbd.sock", ENV, 1000, for_client=True) == [
        SocketLocation("/srv/arbd.sock", "control.socket")
    ]


def test_the_daemon_binds_runtime_directory_then_xdg_then_tmp():
    assert resolve_socket_path("", ENV, 1000) == SocketLocation(
        "/run/arbd/control.sock", "$RUNTIME_DIRECTORY"
    )
    assert resolve_socket_path("", {"XDG_RUNTIME_DIR": "/run/user/1000"}, 1000) == (
        SocketLocation("/run/user/1000/arbd/control.sock", "$XDG_RUNTIME_DIR")
    )
    assert resolve_socket_path("", {}, 1000) == SocketLocation(
        "/tmp/arbd-1000/control.sock", "fallback"
    )
    assert resolve_socket_path("", {"RUNTIME_DIRECTORY": "", "XDG_RUNTIME_DIR": ""}, 7).source == (
        "fallback"
    )


def test_the_client_looks_everywhere_a_daemon_might_be():
    # An operator's shell: no $RUNTIME_DIRECTORY, but the service may run under systemd.
    assert candidate_paths("", {"XDG_RUNTIME_DIR": "/run/user/1000"}, 1000, for_client=True) == [
        SocketLocation("/run/user/1000/arbd/control.sock", "$XDG_RUNTIME_DIR"),
        SocketLocation("/run/arbd/control.sock", "systemd default"),
        SocketLocation("/tmp/arbd-1000/control.sock", "fallback"),
    ]
    # Under the unit itself, the same systemd path is not listed twice.
    paths = [c.path for c in candidate_paths("", ENV, 0, for_client=True)]
    assert paths == [
        "/run/arbd/control.sock",
        "/run/user/1000/arbd/control.sock",
        "/tmp/arbd-0/control.sock",
    ]


def test_path_problems():
    assert path_problem("/run/arbd/control.sock") is None
    assert path_problem("run/control.sock") == "the control socket path must be absolute"
    problem = path_problem("/" + "x" * 120)
    assert problem == (
        "the control socket path is too long for a Unix socket (121 bytes, at most 107)"
    )


def test_arbctl_reads_only_the_socket_from_a_config_file():
    assert configured_socket('[control]\nsocket = "/srv/c.sock"\n[exchanges.x]\nbogus = 1\n') == (
        "/srv/c.sock"
    )
    assert configured_socket("[server]\nport = 1\n") == ""
    with pytest.raises(ValueError, match="invalid TOML"):
        configured_socket("[control\n")
    with pytest.raises(ValueError, match=r"^control.socket: expected a string$"):
        configured_socket("[control]\nsocket = 5\n")
    with pytest.raises(ValueError, match=r"^control: expected a table$"):
        configured_socket("control = 5\n")


@pytest.mark.parametrize(
    ("control", "message"),
    [
        (
            {"socket": "relative.sock"},
            "f.toml: control: socket must be an absolute path, got 'relative.sock'",
        ),
        ({"buffer": 8}, "f.toml: control.buffer: Expected `int` >= 16"),
        ({"max_connections": 0}, "f.toml: control.max_connections: Expected `int` >= 1"),
        ({"sokcet": "/x"}, "f.toml: control.sokcet: unknown key"),
    ],
)
def test_control_config_errors_name_the_key(control, message):
    with pytest.raises(ConfigError) as error:
        parse_config({"control": control}, "f.toml")
    assert str(error.value) == message
