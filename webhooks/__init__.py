"""The webhook service: Salesforce Outbound Messages, signed JSON events, health and metrics.

``create_app`` is imported lazily: the worker imports :mod:`connector.state.inbox`
without Flask's app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(settings_or_mapping: Any = None, **kwargs: Any) -> Flask:
    """Build the webhook service; see :func:`webhooks.app.create_app`."""
    from webhooks.app import create_app as build

    return build(settings_or_mapping, **kwargs)


__all__ = ["create_app"]
