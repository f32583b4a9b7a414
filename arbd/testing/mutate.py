"""Structured mutations of real inputs, for fuzzing arbd's parsers (``arbd.testing.hostile``).

A mutation takes a real input (an exchange frame, a capture line, a client message) and damages
it the ways hostile or broken peers do: a field removed; a value retyped (text <-> number <->
null <-> list <-> object); a number made huge, negative, ``NaN``, ``1e400`` or not a number, or
moved a little (still plausible);
an array emptied or made huge; a symbol replaced; a key duplicated; the text truncated, cut
into invalid UTF-8 or nested absurdly deep.

Every decision is asked of a :class:`Chooser`, so one engine serves two fuzzers: hypothesis
draws the integers (and shrinks a failure to the fewest, smallest decisions) and atheris reads
them from its input bytes (``atheris.FuzzedDataProvider.ConsumeIntInRange``). Nothing here
imports either.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from typing import Final, Protocol, TypeVar

T = TypeVar("T")


class Chooser(Protocol):
    """Where a mutation's decisions come from."""

    def integer(self, low: int, high: int) -> int:
        """An integer in ``[low, high]``."""
        ...


class Token:
    """JSON text written as is (``NaN``, ``1e400``, a 25-digit integer): values that Python's
    ``json`` cannot produce but a hostile peer can send."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Token({self.text!r})"


class DupObject(dict[str, object]):
    """An object written with ``key`` twice: first ``value``, then the real one (JSON parsers
    disagree on which wins, so a peer can smuggle one past a check)."""

    def __init__(self, items: dict[str, object], key: str, value: object) -> None:
        super().__init__(items)
        self.dup_key = key
        self.dup_value = value


NUMBER_TOKENS: Final = (
    "1e400", "-1e400", "NaN", "Infinity", "-Infinity", "-0", "0", "-1", "1e-400",
    "123456789012345678901234567890", "-9223372036854775809", "18446744073709551616",
    "1.7976931348623157e308", "1e300", "-1e300", "0.1e1", "5e-324", "1e-7",
    "0.000000000000000000000000001",
)  # fmt: skip
"""Numbers as JSON tokens (some are not valid JSON, which is the point)."""

NUMBER_TEXTS: Final = (
    "1e400", "-1e400", "NaN", "nan", "inf", "-inf", "Infinity", "-0", "0", "0.0", "-1",
    "-0.5", "1e-400", "", " ", "1_000", "0x10", "1,5", "١٢٣", "12345678901234567890123",
    "0.00000000000000000000001", "64000.5.1", "--1", "+1", "1e5", ".", "-", "e", "0" * 400,
)  # fmt: skip
"""Numbers as JSON strings, as exchanges send prices and sizes: every way text can fail to be
a plain decimal (``1_000`` and Arabic-Indic digits are ones ``float()`` accepts)."""

SYMBOL_TEXTS: Final = (
    "", "BTC", "BTC/", "/USDT", "XXX/YYY", "btcusdt", "BTC-USD", "BTC/USDT/ETH", "ETHUSDT",
    "BTC\nUSD", "BTC USDT", "\u0000", "Ⅻ/ⅩⅢ", "BTCUSDT" * 100,
)  # fmt: skip
"""Replacements for text that names a market: other, malformed and unlisted symbols."""

INVALID_UTF8: Final = (b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80\x80")
MAX_GROWTH: Final = 200_000
"""Bytes an array may grow to by one resize."""
DEEP: Final = 100_000
"""Nesting depth of the deep-array mutation (past every recursion limit)."""

_Path = tuple[object, ...]


def dump(value: object) -> str:
    """JSON text of ``value``, honouring :class:`Token` and :class:`DupObject`; floats that
    are not finite come out as the bare words ``NaN`` / ``Infinity``."""
    if isinstance(value, Token):
        return value.text
    if isinstance(value, DupObject):
        items = [f"{json.dumps(value.dup_key)}:{dump(value.dup_value)}"]
        items += [f"{json.dumps(k)}:{dump(v)}" for k, v in value.items()]
        return "{" + ",".join(items) + "}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dump(v) for v in value) + "]"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return json.dumps(value)


def _paths(value: object, path: _Path = ()) -> list[_Path]:
    """Every path to a value inside ``value`` (the root excluded), depth first."""
    found: list[_Path] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found.append((*path, key))
            found.extend(_paths(item, (*path, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.append((*path, index))
            found.extend(_paths(item, (*path, index)))
    return found


def _get(root: object, path: _Path) -> object:
    for step in path:
        root = root[step]  # type: ignore[index]
    return root


def _set(root: object, path: _Path, value: object) -> None:
    _get(root, path[:-1])[path[-1]] = value  # type: ignore[index]


def _remove(root: object, path: _Path) -> None:
    del _get(root, path[:-1])[path[-1]]  # type: ignore[attr-defined]


def _pick(choose: Chooser, options: Sequence[T]) -> T:
    return options[choose.integer(0, len(options) - 1)]


def _retyped(choose: Chooser, value: object) -> object:
    """``value`` as another JSON type (text <-> number <-> null <-> list <-> object)."""
    if isinstance(value, str):
        options: list[object] = [None, 0, 1.5, True, [], {}, [value], {"x": value}]
        try:
            options.append(Token(str(float(value))) if value else 0)
        except ValueError:
            options.append(-1)
    elif isinstance(value, bool) or value is None:
        options = ["true", 0, 1, "", [], {}, None if value is not None else False]
    elif isinstance(value, int | float):
        options = [str(value), None, [value], {}, True, float(value), -value]
    elif isinstance(value, list):
        options = [{}, None, "", 0, value[:1], [value]]
    else:
        options = [[], None, "", 0, [value]]
    return _pick(choose, options)


def _number(choose: Chooser, value: object) -> object:
    """A hostile number, as text where the value was text, else as a JSON token."""
    if isinstance(value, str):
        return _pick(choose, NUMBER_TEXTS)
    return Token(str(_pick(choose, NUMBER_TOKENS)))


def _nudged(choose: Chooser, value: object) -> object:
    """A different but plausible value: a number (or numeric text) moved a little, so that a
    frame damaged elsewhere still carries levels that apply (and could be left half-applied)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return value
    try:
        number = float(value)
    except ValueError:
        return value
    if not math.isfinite(number):
        return value
    moved = number + choose.integer(1, 9) * 10.0 ** choose.integer(-3, 1)
    return f"{moved:.4f}" if isinstance(value, str) else moved


def _resized(choose: Chooser, value: object) -> object:
    """An array emptied, cut, or made huge by repeating its items (or the value itself)."""
    items = value if isinstance(value, list) else [value]
    mode = choose.integer(0, 3)
    if mode == 0:
        return []
    if mode == 1 and items:
        return items[: choose.integer(0, len(items) - 1)]
    # Huge, but not without end: copies, not references (resizing an item shared by every
    # copy would multiply), and at most MAX_GROWTH bytes, or the generation of an input (not
    # its parsing) would take seconds.
    item_size = max((len(dump(item)) for item in items[:10]), default=4)
    count = choose.integer(2, max(2, min(2000, MAX_GROWTH // item_size)))
    return [copy.deepcopy(items[i % len(items)]) if items else None for i in range(count)]


def mutate_value(root: object, choose: Chooser, symbols: Sequence[str] = ()) -> object:
    """``root`` (decoded JSON) with one structural mutation; may return a new root."""
    paths = _paths(root)
    if not paths:
        return _retyped(choose, root)
    path = paths[choose.integer(0, len(paths) - 1)]
    value = _get(root, path)
    operation = choose.integer(0, 6)
    if operation == 6:
        _set(root, path, _nudged(choose, value))
    elif operation == 0 and isinstance(_get(root, path[:-1]), dict):
        _remove(root, path)
    elif operation == 1:
        _set(root, path, _retyped(choose, value))
    elif operation == 2:
        _set(root, path, _number(choose, value))
    elif operation == 3:
        _set(root, path, _resized(choose, value))
    elif operation == 4:
        _set(root, path, _pick(choose, [*SYMBOL_TEXTS, *symbols]))
    else:
        parent = _get(root, path[:-1])
        if isinstance(parent, dict) and not isinstance(parent, DupObject):
            decoy = _retyped(choose, value)
            replacement = DupObject(parent, str(path[-1]), decoy)
            if len(path) == 1:
                return replacement
            _set(root, path[:-1], replacement)
    return root


def mutate_bytes(data: bytes, choose: Chooser) -> bytes:
    """One byte-level mutation: truncate, invalid UTF-8, a flipped byte, deep nesting, or a
    splice with itself."""
    operation = choose.integer(0, 4)
    at = choose.integer(0, len(data))
    if operation == 0:
        return data[:at]
    if operation == 1:
        return data[:at] + _pick(choose, INVALID_UTF8) + data[at:]
    if operation == 2 and data:
        at = min(at, len(data) - 1)
        return data[:at] + bytes([data[at] ^ (1 << choose.integer(0, 7))]) + data[at + 1 :]
    if operation == 3:
        depth = _pick(choose, (64, 1000, DEEP))
        return data[:at] + b"[" * depth + b"]" * depth + data[at:]
    return data[:at] + data


def mutate(data: bytes, choose: Chooser, symbols: Sequence[str] = (), rounds: int = 4) -> bytes:
    """``data`` (JSON text, usually a real frame) with 1 to ``rounds`` mutations: structural
    ones while it still decodes as JSON, then maybe one at the byte level."""
    try:
        value: object = json.loads(data)
        structured = True
    except ValueError:
        structured = False
    for _ in range(choose.integer(1, rounds)):
        if not structured:
            break
        value = mutate_value(value, choose, symbols)
    out = dump(value).encode() if structured else data
    if not structured or choose.integer(0, 3) == 0:
        out = mutate_bytes(out, choose)
    return out


def _tomlable(value: object) -> object:
    """Decoded JSON with mutations -> what ``tomli_w`` can write (TOML has no null)."""
    if isinstance(value, Token):
        try:
            return int(value.text)
        except ValueError:
            pass
        try:
            return float(value.text)
        except ValueError:
            return value.text
    if isinstance(value, dict):
        return {str(k): _tomlable(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_tomlable(v) for v in value if v is not None]
    return value


EXTRA_KEYS: Final = ("prot", "Port", "", " ", "a.b", "a\nb", "é", "`x`", "exchanges")


def config_document(choose: Chooser, base: dict[str, object]) -> bytes:
    """A TOML document built from ``base`` (a real configuration as builtins, such as
    ``arbd config init`` writes) with 1-4 mutations: values retyped or made hostile, keys
    removed or added (unknown, empty, with dots, newlines or backticks), a section replaced;
    then maybe one byte-level mutation of the text."""
    import tomli_w  # noqa: PLC0415 - only config fuzzing needs it

    value: object = json.loads(dump(base))
    for _ in range(choose.integer(1, 4)):
        if choose.integer(0, 4) == 0:
            paths = [p for p in _paths(value) if isinstance(_get(value, p), dict)] or [()]
            target = _get(value, paths[choose.integer(0, len(paths) - 1)])
            assert isinstance(target, dict)
            key = str(_pick(choose, [*EXTRA_KEYS, "x" * choose.integer(1, 300)]))
            target[key] = _pick(choose, [1, "x", True, [], {}, 1.5, {"y": 1}])
        else:
            value = mutate_value(value, choose)
    tomlable = _tomlable(value)
    if not isinstance(tomlable, dict):
        tomlable = {"daemon": tomlable}
    try:
        text = tomli_w.dumps(tomlable).encode()
    except (TypeError, ValueError):  # not writable as TOML (a list of mixed tables, say)
        text = dump(value).encode()
    if choose.integer(0, 5) == 0:
        text = mutate_bytes(text, choose)
    return text


CAPTURE_SUFFIXES: Final = (".jsonl", ".jsonl.gz", ".jsonl.zst")


def damage_capture(lines: Sequence[bytes], choose: Chooser) -> tuple[bytes, str]:
    """A capture (its lines, newlines kept) with 1-3 damages to its lines (one mutated,
    dropped, repeated, or the file cut off inside one), then written plain, gzip or zstandard,
    a compressed one maybe cut off too (a recording killed mid-write). Returns the file's
    bytes and its suffix (which says how it is compressed)."""
    import gzip  # noqa: PLC0415 - only capture fuzzing needs these

    import zstandard  # noqa: PLC0415

    damaged = list(lines)
    for _ in range(choose.integer(1, 3)):
        if not damaged:
            break
        at = choose.integer(0, len(damaged) - 1)
        operation = choose.integer(0, 3)
        if operation == 0:
            damaged[at] = mutate(damaged[at].rstrip(b"\n"), choose) + b"\n"
        elif operation == 1:
            del damaged[at]
        elif operation == 2:
            damaged.insert(at, damaged[choose.integer(0, len(damaged) - 1)])
        else:
            damaged = [*damaged[:at], damaged[at][: choose.integer(0, len(damaged[at]))]]
    data = b"".join(damaged)
    suffix = _pick(choose, CAPTURE_SUFFIXES)
    if suffix == ".jsonl.gz":
        data = gzip.compress(data, mtime=0)
    elif suffix == ".jsonl.zst":
        data = zstandard.ZstdCompressor().compress(data)
    if suffix != ".jsonl" and choose.integer(0, 2) == 0:
        data = data[: choose.integer(0, len(data))]
    return data, suffix
