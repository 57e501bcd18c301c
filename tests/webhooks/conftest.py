"""Flask fixtures (``app``, ``client``, ``runner``) over a temporary state database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner

from tests.webhooks.fakes import FakeKinds, fake_kinds, section_overrides  # noqa: F401
from webhooks import create_app
from webhooks.runtime import Runtime


@pytest.fixture
def app(tmp_path: Path, fake_kinds: FakeKinds) -> Iterator[Flask]:  # noqa: F811
    """The webhook app: state database in tmp_path, in-memory queue, fake sync kinds."""
    app = create_app({"TESTING": True, **section_overrides(tmp_path)})
    yield app
    rt: Runtime = app.extensions["mentorsync"]
    rt.worker.close()
    rt.db.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def rt(app: Flask) -> Runtime:
    """The app's runtime: settings, db, worker (queue)."""
    return app.extensions["mentorsync"]
