"""Fixtures shared by every test folder: real database and queue backends (tests/backends.py)."""

from tests.backends import backend, postgres_server, redis_server  # noqa: F401
