"""Shared fixtures. Keep this small: fixtures used by one directory live next to its tests."""

import os
import shutil
import tempfile

import pytest
from hypothesis import settings

# The fuzz tests (tests/fuzz/) at full strength: `pytest tests/fuzz --hypothesis-profile=fuzz`,
# or ARBD_FUZZ=1. Registered here: pytest picks the profile before tests/fuzz is collected.
settings.register_profile("fuzz", max_examples=5_000, deadline=None)
if os.environ.get("ARBD_FUZZ"):
    settings.load_profile("fuzz")


@pytest.fixture
def virtual_time(mock_clock):
    """Virtual time that still lets loopback I/O happen: the clock only jumps after 5 ms of
    real idleness, far longer than the kernel needs to deliver a loopback write."""
    mock_clock.autojump_threshold = 0.005
    return mock_clock


@pytest.fixture(autouse=True, scope="session")
def _private_runtime_dir():
    """A daemon a test starts binds its control socket in a runtime directory of this test run,
    never next to a real daemon's (or another test run's). Short: socket paths fit 107 bytes."""
    path = tempfile.mkdtemp(prefix="arbd-rt-")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_RUNTIME_DIR", path)
        mp.delenv("RUNTIME_DIRECTORY", raising=False)
        yield path
    shutil.rmtree(path, ignore_errors=True)
