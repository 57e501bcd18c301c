"""The composition root: which sync kinds this build has.

The only module that imports the kinds' packages. The CLI, the worker and the webhook service
ask :func:`kinds` and know nothing else about them; the engine never imports a kind. A kind is
added here (one line) and nowhere else. Tests swap :data:`REGISTRY` for their own kinds.
"""

from __future__ import annotations

from connector.engine.kind import SyncKind

REGISTRY: dict[str, SyncKind] = {}
_BUILT_IN_LOADED = False


def register(kind: SyncKind) -> SyncKind:
    """Register a sync kind under its name (idempotent)."""
    REGISTRY[kind.name] = kind
    return kind


def _load_built_in() -> None:
    global _BUILT_IN_LOADED
    if _BUILT_IN_LOADED:
        return
    _BUILT_IN_LOADED = True
    from connector.kinds.members.kind import MembersSync
    from connector.kinds.pairs.kind import PairsSync
    from connector.kinds.progress.kind import ProgressSync

    for kind in (MembersSync(), PairsSync(), ProgressSync()):
        REGISTRY.setdefault(kind.name, kind)


def kinds() -> dict[str, SyncKind]:
    """Every registered sync kind, the built-in ones included."""
    _load_built_in()
    return REGISTRY


def kind_for_object(obj: str) -> str | None:
    """The first sync kind that handles events about ``obj``, or None."""
    for name, kind in kinds().items():
        if obj in kind.objects:
            return name
    return None
