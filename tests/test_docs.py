"""The docs cannot drift from the code: hooks, event examples and config keys are checked here."""

from __future__ import annotations

import inspect
import re
import tomllib
from pathlib import Path
from typing import Any

import msgspec
import pytest

import arbd
import arbd.config
import arbd.hookspecs
from arbd.capture import Header, iter_records
from arbd.control import protocol
from arbd.control.protocol import RESULT_TYPES, ErrorReply, OkReply, parse_request
from arbd.model import Event, encode_event

DOCS = Path(__file__).resolve().parent.parent / "docs"


def hook_names() -> list[str]:
    return sorted(
        name
        for name, value in vars(arbd.hookspecs).items()
        if name.startswith("arbd_") and inspect.isfunction(value)
    )


def test_there_are_hooks_to_document() -> None:
    assert "arbd_exchanges" in hook_names()


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_is_documented(hook: str) -> None:
    text = (DOCS / "plugins.md").read_text()
    headings = re.findall(r"^### (\S+)\s*$", text, flags=re.MULTILINE)
    assert hook in headings, f"docs/plugins.md has no '### {hook}' section"
    # The section says something: it is not an empty heading.
    section = text.split(f"### {hook}\n", 1)[1].split("\n#", 1)[0]
    assert len(section.split()) >= 15


# -- docs/protocol.md ----------------------------------------------------------------------------


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def protocol_events() -> list[str]:
    text = (DOCS / "protocol.md").read_text()
    events = text.split("## Events", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in code_blocks(events, "json")]


def test_protocol_examples_decode_into_the_model() -> None:
    examples = protocol_events()
    assert examples
    seen = set()
    for example in examples:
        event = msgspec.json.decode(example, type=Event)
        seen.add(type(event))
        # The doc shows the exact wire form: re-encoding gives the same bytes.
        assert encode_event(event).decode() == example
    # Every event type of the model has an example.
    assert seen == set(Event.__args__)


def section(text: str, heading: str) -> str:
    """The text under ``heading`` (a ``## `` line) up to the next ``## `` heading."""
    return text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]


def test_protocol_capture_example_is_a_readable_capture(tmp_path: Path) -> None:
    text = (DOCS / "protocol.md").read_text()
    captures = code_blocks(section(text, "## Captures"), "jsonl")
    assert len(captures) == 1
    path = tmp_path / "example.jsonl"
    path.write_text(captures[0])
    records = [record for _, record in iter_records(path)]
    assert isinstance(records[0], Header)
    table = re.findall(r"^\| `(\w+)` \|", section(text, "## Captures"), re.MULTILINE)
    documented = set(table) - {"t"}  # the table's header row
    assert {type(r).__name__.lower() for r in records} == documented


# -- docs/protocol.md: the control channel ------------------------------------------------------


def control_examples() -> list[str]:
    text = (DOCS / "protocol.md").read_text()
    return [block.strip() for block in code_blocks(section(text, "## Control channel"), "json")]


def test_control_channel_examples_are_what_the_protocol_parses_and_writes() -> None:
    parsed: dict[object, object] = {}  # id -> what parse_request made of the documented request
    commands: set[str] = set()
    answered: set[str] = set()
    for example in control_examples():
        assert "\n" not in example, "one line per message"
        fields = msgspec.json.decode(example)
        if "cmd" in fields:
            request = parse_request(example.encode())
            parsed[fields["id"]] = request
            if not isinstance(request, ErrorReply):
                commands.add(fields["cmd"])
        elif fields.get("ok") is True:
            reply = msgspec.json.decode(example, type=OkReply)
            request = parsed[reply.id]  # a reply follows the request it answers
            assert not isinstance(request, ErrorReply)
            command = type(request).__struct_config__.tag
            assert isinstance(command, str)
            result = msgspec.convert(reply.result, RESULT_TYPES[command])
            # Exactly what the server writes for that result.
            assert protocol.ok(reply.id, result).decode().rstrip("\n") == example
            answered.add(command)
        elif fields.get("ok") is False:
            error = msgspec.json.decode(example, type=ErrorReply)
            assert error.error.code in protocol.ERROR_CODES
            assert protocol.encode(error).decode().rstrip("\n") == example
            request = parsed.get(error.id)
            if isinstance(request, ErrorReply):
                # A documented bad request gets exactly the documented error.
                assert protocol.encode(request).decode().rstrip("\n") == example
        else:
            event = msgspec.json.decode(example, type=Event | protocol.Lag)
            assert msgspec.json.encode(event).decode() == example
    # Every request has an example, and a successful reply to it.
    assert commands == set(protocol.COMMANDS)
    assert answered == set(protocol.COMMANDS)


def test_every_control_error_code_is_documented() -> None:
    text = section((DOCS / "protocol.md").read_text(), "## Control channel")
    codes_table = text.split("\n| code | meaning |\n", 1)[1].split("\n\n", 1)[0]
    documented = re.findall(r"^\| `([a-z_]+)` \|", codes_table, flags=re.MULTILINE)
    assert sorted(documented) == sorted(protocol.ERROR_CODES)


# -- docs/configuration.md -------------------------------------------------------------------------


def config_sections() -> list[tuple[str, type[msgspec.Struct]]]:
    """(key prefix, struct) for every section of ``arbd.config.Config``."""
    sections: list[tuple[str, type[msgspec.Struct]]] = []
    for field in msgspec.structs.fields(arbd.config.Config):
        if field.name == "exchanges":
            sections.append(("exchanges.<id>", arbd.config.ExchangeConfig))
        else:
            assert isinstance(field.type, type)
            assert issubclass(field.type, msgspec.Struct)
            sections.append((field.name, field.type))
    return sections


def documented_defaults() -> dict[str, str]:
    text = (DOCS / "configuration.md").read_text()
    rows = re.findall(r"^\| `([a-z_<>.]+)` \| (.+?) \|", text, flags=re.MULTILINE)
    return dict(rows)


def doc_value(cell: str) -> Any:
    if cell == "unset":
        return None
    assert cell.startswith("`"), cell
    assert cell.endswith("`"), cell
    return tomllib.loads(f"x = {cell[1:-1]}")["x"]


def test_every_config_key_is_documented_with_its_default() -> None:
    documented = documented_defaults()
    expected = set()
    for prefix, struct in config_sections():
        defaults = msgspec.to_builtins(struct())
        for field in msgspec.structs.fields(struct):
            key = f"{prefix}.{field.name}"
            expected.add(key)
            assert key in documented, f"docs/configuration.md does not document {key}"
            assert doc_value(documented[key]) == defaults.get(field.name), (
                f"docs/configuration.md shows the wrong default for {key}"
            )
    # And nothing documented that does not exist (a renamed or removed key).
    assert set(documented) == expected


# -- docs/protocol.md: the local WebSocket server ---------------------------------------------


def server_section() -> str:
    text = (DOCS / "protocol.md").read_text()
    return text.split("## Local WebSocket server", 1)[1].split("\n## ", 1)[0]


def test_server_examples_are_what_the_server_says():
    """Every client example, sent in order, gives exactly the server examples that follow it."""
    from arbd.config import ServerConfig
    from arbd.server.protocol import ClientMessage, ClientSession, ServerMessage, encode

    blocks = [block.strip() for block in code_blocks(server_section(), "json")]
    hello = msgspec.json.decode(blocks[0], type=ServerMessage)
    assert hello.__struct_config__.tag == "hello"
    session = ClientSession(ServerConfig(), lambda: hello.markets, now=0.0)  # type: ignore[union-attr]
    greeting = session.hello(hello.server_time).decode()  # type: ignore[union-attr]
    assert greeting.replace(f"arbd {arbd.__version__}", "arbd 0.1.0") == blocks[0]
    actions, types = set(), {"hello"}
    expected: list[bytes] = []
    for block in blocks[1:]:
        if '"action"' in block:
            assert not expected, f"no example shows the reply to the previous request: {expected}"
            actions.add(msgspec.json.decode(block, type=ClientMessage).__struct_config__.tag)
            expected = session.receive(block.encode(), 0.0, server_time=1_700_000_000_500).replies
            continue
        message = msgspec.json.decode(block, type=ServerMessage)
        types.add(message.__struct_config__.tag)
        assert encode(message).decode() == block  # the exact wire form
        if expected:
            assert block == expected.pop(0).decode()
    assert not expected
    assert actions == {"subscribe", "unsubscribe", "ping"}
    assert types == {t.__struct_config__.tag for t in ServerMessage.__args__}  # type: ignore[attr-defined]


def test_every_server_error_code_is_documented():
    from typing import get_args

    from arbd.server.protocol import ErrorCode

    errors = server_section().split("### Errors", 1)[1].split("\n### ", 1)[0]
    table = re.findall(r"^\| `(\w+)` \|", errors, re.M)
    assert sorted(table) == sorted(get_args(ErrorCode))
