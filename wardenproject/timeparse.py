"""Reading an ISO-8601 date-time from a request, into a value the database can store."""

from __future__ import annotations

from datetime import UTC, datetime

from django.utils.dateparse import parse_datetime


def datetime_parse_utc(text: str, *, zone_required: bool = False) -> datetime | None:
    """``text`` as an aware datetime in UTC (no zone reads as UTC unless ``zone_required``),
    or None when it is not one. Converted here because PostgreSQL refuses what Python takes
    (a zone offset past ±15:59, such as ``+21:31``) with an error that aborts the
    transaction, and a well-formed impossible time (month 13, or before year 1 once in UTC)
    is None too, never an exception."""
    try:
        value = parse_datetime(text)
    except ValueError:
        return None
    if value is None:
        return None
    if value.tzinfo is None:
        if zone_required:
            return None
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        return None
