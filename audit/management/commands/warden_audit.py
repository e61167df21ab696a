"""The audit log from the command line.

manage.py warden_audit export --org ORG [--format csv|jsonl] [--since ISO] [--until ISO]
                              [--kind check|outcome|log|decision|config] [--output FILE]
manage.py warden_audit purge     (apply every plan's retention now, as the beat task does)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.timezone import make_aware

from audit.export import FORMATS, audit_entries_for_export, export_lines
from audit.models import AuditEntry
from audit.services import audit_purge_expired
from wardenproject.commands import organization_from


def _when(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    parsed = parse_datetime(value)
    if parsed is None and (day := parse_date(value)) is not None:
        parsed = datetime(day.year, day.month, day.day)
    if parsed is None:
        raise CommandError(f"--{name} must be an ISO-8601 date or date and time.")
    return parsed if parsed.tzinfo else make_aware(parsed)


class Command(BaseCommand):
    help = "Export the audit log (CSV or JSON Lines) or purge entries past retention."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="verb", required=True)
        export = sub.add_parser("export")
        export.add_argument("--org", required=True)
        export.add_argument("--format", choices=FORMATS, default="jsonl")
        export.add_argument("--since")
        export.add_argument("--until")
        export.add_argument("--kind", choices=AuditEntry.Kind.values)
        export.add_argument("--output")
        sub.add_parser("purge")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["verb"] == "purge":
            self.stdout.write(f"Deleted {audit_purge_expired()} entries past retention.")
            return
        entries = audit_entries_for_export(
            organization=organization_from(options["org"]),
            since=_when(options.get("since"), "since"),
            until=_when(options.get("until"), "until"),
            kind=options.get("kind"),
        )
        if options.get("output"):
            with open(options["output"], "w", encoding="utf-8", newline="") as out:
                for chunk in export_lines(entries, options["format"]):
                    out.write(chunk)
        else:
            for chunk in export_lines(entries, options["format"]):
                self.stdout.write(chunk, ending="")
