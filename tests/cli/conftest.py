"""Helpers shared by the CLI tests."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence


def loaded_by_import(module: str, candidates: Sequence[str]) -> list[str]:
    """Which of ``candidates`` a fresh interpreter has in ``sys.modules`` after importing
    ``module`` (what a command's start-up pays for before it does anything)."""
    code = (
        f"import json, sys, {module}; "
        f"print(json.dumps([m for m in {list(candidates)!r} if m in sys.modules]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded: list[str] = json.loads(result.stdout)
    return loaded
