"""Small helpers for the JSON the API and webhooks answer with."""

from __future__ import annotations

from datetime import date


def iso(value: date | None) -> str | None:
    """ISO 8601 text of a date or datetime, or None."""
    return value.isoformat() if value is not None else None
