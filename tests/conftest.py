"""Shared fixtures. Keep this small: fixtures used by one directory live next to its tests."""

import pytest


@pytest.fixture
def virtual_time(mock_clock):
    """Virtual time that still lets loopback I/O happen: the clock only jumps after 5 ms of
    real idleness, far longer than the kernel needs to deliver a loopback write."""
    mock_clock.autojump_threshold = 0.005
    return mock_clock
