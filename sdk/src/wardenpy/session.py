"""Per-task / per-thread session id attached to every policy check."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_session_id: ContextVar[str | None] = ContextVar("wardenpy_session_id", default=None)


def set_session(session_id: str | None) -> None:
    """Attach ``session_id`` to every check made from this thread / asyncio task."""
    _session_id.set(session_id)


def get_session() -> str | None:
    """The current session id, or ``None``."""
    return _session_id.get()


def clear_session() -> None:
    """Forget the current session id."""
    _session_id.set(None)


@contextmanager
def session(session_id: str) -> Iterator[str]:
    """``with wardenpy.session("conv_1"): ...`` sets the id for the block only."""
    token = _session_id.set(session_id)
    try:
        yield session_id
    finally:
        _session_id.reset(token)
