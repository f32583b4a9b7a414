"""Coverage-guided fuzzing of arbd's parsers with atheris (libFuzzer for Python).

The targets are the ones the hypothesis tests in ``tests/fuzz/`` run (``arbd.testing.hostile``
and ``arbd.testing.hostile_local``: one function per target feeds one input and checks the
outcome); here libFuzzer chooses the inputs, steered by the Python code they reach. Each input
is read two ways, chosen by its first byte: the rest as a raw input (a frame, a message, a
file), or as the decisions of the structured mutation engine (``arbd.testing.mutate``) applied
to a real input, so libFuzzer's byte mutations become structural ones.

    pip install -e '.[fuzz]'
    python fuzz/run.py adapter-binance --seconds 300
    python fuzz/run.py server --seconds 120 -- -jobs=1 -print_final_stats=1

Targets: ``adapter-<exchange>`` (every exchange with a seed capture), ``server``, ``control``,
``capture``, ``config``. The working corpus goes to ``--corpus`` (default
``/tmp/arbd-fuzz/<target>``); a failing input is written by libFuzzer as ``crash-<sha1>`` in the
current directory: fix the parser, then keep the input in ``tests/fuzz/corpus/<target>/``.
Arguments after ``--`` go to libFuzzer unchanged.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "tests" / "fuzz" / "seeds"
LOCAL_SEEDS = {
    "server": [
        b'{"action":"subscribe","symbols":["BTC/USDT"],"exchanges":["binance"],'
        b'"channels":["price","book"],"id":1}',
        b'{"action":"unsubscribe","symbols":["ETH/USD"],"id":"u1"}',
        b'{"action":"ping","id":2}',
    ],
    "control": [
        b'{"cmd":"status","id":1}',
        b'{"cmd":"subscribe","symbols":["BTC/USDT"],"exchanges":["binance"],"channels":["price"]}',
        b'{"cmd":"symbols","op":"add","exchange":"kraken","symbols":["SOL/USD"],"id":4}',
        b'{"cmd":"opportunities","all":true}',
    ],
}

# Everything imported here is instrumented for coverage, the plugins too: load_plugins() imports
# them through their entry points, so it runs inside the block. (The compiled order book is C
# and not instrumented; it is still exercised.)
with atheris.instrument_imports(include=["arbd", "arbd_binance", "arbd_bybit", "arbd_coinbase",
                                         "arbd_kraken", "arbd_okx", "arbd_simplex"]):  # fmt: skip
    from arbd.config import Config, ExchangeConfig, config_to_dict
    from arbd.plugins import load_plugins
    from arbd.testing.hostile import SessionTarget
    from arbd.testing.hostile_local import (
        check_capture,
        check_client_message,
        check_config,
        check_control_line,
    )
    from arbd.testing.mutate import config_document, damage_capture, mutate

    REGISTRY = load_plugins()


class Provider:
    """A ``Chooser`` reading libFuzzer's bytes."""

    def __init__(self, fdp: atheris.FuzzedDataProvider) -> None:
        self.fdp = fdp

    def integer(self, low: int, high: int) -> int:
        return int(self.fdp.ConsumeIntInRange(low, high))


Target = Callable[[bytes], None]


def adapter_target(exchange: str) -> Target:
    target = SessionTarget(SEEDS / f"{exchange}.capture.jsonl.gz", REGISTRY)
    names = [*target.symbols, *target.natives]

    def one_input(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        structured = fdp.ConsumeBool()
        at = fdp.ConsumeIntInRange(0, len(target.frames) - 1)
        if structured:
            choose = Provider(fdp)
            frame = mutate(target.frames[at].data, choose, names)
        else:
            frame = fdp.ConsumeBytes(fdp.remaining_bytes())
        target.check(frame, at)

    return one_input


def message_target(name: str, check: Callable[[bytes], object]) -> Target:
    seeds = LOCAL_SEEDS[name]

    def one_input(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        if fdp.ConsumeBool():
            choose = Provider(fdp)
            check(mutate(seeds[choose.integer(0, len(seeds) - 1)], choose, ["BTC/USDT"]))
        else:
            check(fdp.ConsumeBytes(fdp.remaining_bytes()))

    return one_input


def capture_target() -> Target:
    registry = REGISTRY
    seeds = [
        gzip.decompress(p.read_bytes()).splitlines(keepends=True)[:40]
        for p in sorted(SEEDS.glob("*.capture.jsonl.gz"))
    ]
    work = Path(tempfile.mkdtemp(prefix="arbd-fuzz-capture-"))

    def one_input(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        if fdp.ConsumeBool():
            choose = Provider(fdp)
            content, suffix = damage_capture(seeds[choose.integer(0, len(seeds) - 1)], choose)
        else:
            suffix = (".jsonl", ".jsonl.gz", ".jsonl.zst")[fdp.ConsumeIntInRange(0, 2)]
            content = fdp.ConsumeBytes(fdp.remaining_bytes())
        path = work / f"input{suffix}"
        path.write_bytes(content)
        check_capture(path, registry)

    return one_input


def config_target() -> Target:
    base = config_to_dict(
        Config(
            exchanges={"binance": ExchangeConfig(symbols=["BTC/USDT"]), "kraken": ExchangeConfig()}
        )
    )
    path = Path(tempfile.mkdtemp(prefix="arbd-fuzz-config-")) / "arbd.toml"

    def one_input(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        if fdp.ConsumeBool():
            path.write_bytes(config_document(Provider(fdp), base))
        else:
            path.write_bytes(fdp.ConsumeBytes(fdp.remaining_bytes()))
        check_config(path)

    return one_input


def targets() -> list[str]:
    exchanges = sorted(p.name.split(".")[0] for p in SEEDS.glob("*.capture.jsonl.gz"))
    return [*(f"adapter-{e}" for e in exchanges), "server", "control", "capture", "config"]


def build(name: str) -> Target:
    if name.startswith("adapter-"):
        return adapter_target(name.removeprefix("adapter-"))
    if name == "server":
        return message_target(name, check_client_message)
    if name == "control":
        return message_target(name, check_control_line)
    return capture_target() if name == "capture" else config_target()


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=targets())
    parser.add_argument("--seconds", type=int, default=60, help="total fuzzing time")
    parser.add_argument("--corpus", type=Path, help="working corpus directory")
    args = parser.parse_args(argv)
    corpus = args.corpus or Path(tempfile.gettempdir()) / "arbd-fuzz" / args.target
    corpus.mkdir(parents=True, exist_ok=True)
    one_input = build(args.target)
    libfuzzer = [
        sys.argv[0],
        str(corpus),
        f"-max_total_time={args.seconds}",
        "-timeout=20",  # an input running 20 s is a hang
        "-rss_limit_mb=4096",
        "-print_final_stats=1",
        *extra,
    ]
    atheris.Setup(libfuzzer, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
