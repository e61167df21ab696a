"""Exporting the audit log as CSV or JSON Lines, streamed row by row."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from accounts.models import Organization
from audit.models import AuditEntry

FORMATS = ("jsonl", "csv")
COLUMNS = (
    "id",
    "kind",
    "created_at",
    "actor",
    "agent_id",
    "action",
    "action_id",
    "arguments",
    "environment",
    "session_id",
    "decision",
    "status",
    "rule_id",
    "rule",
    "reason",
    "latency_us",
    "source",
    "target_type",
    "target_id",
    "data",
)


def audit_entries_for_export(
    *,
    organization: Organization,
    since: datetime | None = None,
    until: datetime | None = None,
    kind: str | None = None,
    agent_public_id: str | None = None,
) -> QuerySet[AuditEntry]:
    entries = AuditEntry.objects.filter(organization=organization)
    if since is not None:
        entries = entries.filter(created_at__gte=since)
    if until is not None:
        entries = entries.filter(created_at__lt=until)
    if kind:
        entries = entries.filter(kind=kind)
    if agent_public_id:
        entries = entries.filter(agent_public_id=agent_public_id)
    return entries.order_by("created_at", "id")


# CSV injection (OWASP "CSV Injection"): a spreadsheet runs a cell that starts with one of
# these as a formula. Full-width forms are included: some spreadsheets read them as the
# ASCII ones.
FORMULA_TRIGGERS = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell that no spreadsheet runs as a formula.

    Text starting with ``= + - @``, a tab or a carriage return, or with whitespace and then
    one of those (spreadsheets may trim the whitespace on import), gets a leading single
    quote, as OWASP advises: ``=1+2`` is written ``'=1+2``. Numbers stay numbers (the
    ``latency_us`` column); text that only looks like a number (``-5`` from an agent's
    arguments) is text and is prefixed too. The csv module quotes any cell holding a comma,
    quote or line break, so a value never spills into a cell of its own.
    """
    if not isinstance(value, str) or not value:
        return value
    if value[0] in FORMULA_TRIGGERS or value.lstrip()[:1] in FORMULA_TRIGGERS:
        return "'" + value
    return value


def entry_row(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.public_id,
        "kind": entry.kind,
        "created_at": entry.created_at.isoformat(),
        "actor": entry.actor_label,
        "agent_id": entry.agent_public_id or None,
        "action": entry.action or None,
        "action_id": entry.action_id or (entry.public_id if entry.kind == "check" else None),
        "arguments": entry.arguments,
        "environment": entry.environment or None,
        "session_id": entry.session_id or None,
        "decision": entry.decision or None,
        "status": entry.status or None,
        "rule_id": entry.rule_public_id or None,
        "rule": entry.rule_name or None,
        "reason": entry.reason or None,
        "latency_us": entry.latency_us,
        "source": entry.source or None,
        "target_type": entry.target_type or None,
        "target_id": entry.target_id or None,
        "data": entry.data or None,
    }


def export_lines(entries: QuerySet[AuditEntry], fmt: str) -> Iterator[str]:
    """Yield the export text in pieces (a header first for CSV)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    rows = (entry_row(entry) for entry in entries.iterator(chunk_size=1000))
    if fmt == "jsonl":
        for row in rows:
            yield json.dumps(row, default=str, ensure_ascii=False) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    yield buffer.getvalue()
    for row in rows:
        buffer.seek(0)
        buffer.truncate()
        for key in ("arguments", "data"):
            if row[key] is not None:
                row[key] = json.dumps(row[key], default=str, ensure_ascii=False)
        writer.writerow({key: csv_cell(value) for key, value in row.items()})
        yield buffer.getvalue()
