"""Shared fixtures. Keep this small: fixtures used by one directory live next to its tests."""
