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
        writer.writerow(row)
        yield buffer.getvalue()
