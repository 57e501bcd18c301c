"""Fixtures shared by the sandbox tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.testing import RestSession


@pytest.fixture
def rest(sf: object) -> Iterator[RestSession]:
    """A logged-in plain REST client of the test module's ``sf`` sandbox."""
    client = RestSession(sf)  # type: ignore[arg-type]
    client.login()
    yield client
    client.close()
