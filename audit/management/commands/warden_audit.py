"""The audit log from the command line.

manage.py warden_audit export --org ORG [--format csv|jsonl] [--since ISO] [--until ISO]
                              [--kind check|outcome|log|decision|config] [--output FILE]
manage.py warden_audit export --org ORG --chain [--since ISO] [--until ISO] [--output FILE]
                              (the sealed chain with its checkpoints, signed: for auditors)
manage.py warden_audit verify --org ORG [--since ISO]
                              (recompute the chain, check the checkpoints; exit 1 if wrong)
manage.py warden_audit verify-export FILE --public-key KEY [--public-key KEY ...]
                              (check a --chain export offline, without the database)
manage.py warden_audit seal [--checkpoint]
                              (seal pending entries now, as the beat task does)
manage.py warden_audit keys      (the public keys checkpoints are verified with)
manage.py warden_audit purge     (apply every plan's retention now, as the beat task does)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_date
from django.utils.timezone import make_aware

from audit.chain import Report
from audit.chain_export import chain_export_lines, export_verify
from audit.export import FORMATS, audit_entries_for_export, export_lines
from audit.models import AuditEntry
from audit.selectors import audit_chain_verify, audit_public_keys
from audit.services import audit_checkpoints_sign, audit_purge_expired, audit_seal
from audit.signing import BadKey, public_key_from_text
from wardenproject.commands import organization_from
from wardenproject.timeparse import datetime_parse_utc


def _when(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    parsed = datetime_parse_utc(value)
    if parsed is None:
        try:
            day = parse_date(value)
        except ValueError:  # well formed but impossible: 2026-13-01
            day = None
        if day is not None:
            parsed = make_aware(datetime(day.year, day.month, day.day))
    if parsed is None:
        raise CommandError(f"--{name} must be an ISO-8601 date or date and time.")
    return parsed


class Command(BaseCommand):
    help = (
        "Export the audit log (CSV, JSON Lines or its verifiable chain), verify its chain or "
        "an export of it, seal pending entries, or purge entries past retention."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="verb", required=True)
        export = sub.add_parser("export")
        export.add_argument("--org", required=True)
        export.add_argument("--format", choices=FORMATS, default="jsonl")
        export.add_argument("--since")
        export.add_argument("--until")
        export.add_argument("--kind", choices=AuditEntry.Kind.values)
        export.add_argument("--output")
        export.add_argument(
            "--chain",
            action="store_true",
            help="Export the sealed chain with its checkpoints (JSON Lines, signed), which "
            "`verify-export` checks offline. --kind and --format do not apply.",
        )
        verify = sub.add_parser("verify")
        verify.add_argument("--org", required=True)
        verify.add_argument("--since", help="Start at the first entry from this time.")
        verify_export = sub.add_parser("verify-export")
        verify_export.add_argument("file")
        verify_export.add_argument(
            "--public-key",
            action="append",
            required=True,
            help="Base64 or PEM Ed25519 public key, or a file holding one (repeatable).",
        )
        seal = sub.add_parser("seal")
        seal.add_argument(
            "--checkpoint", action="store_true", help="Sign every head with new entries now."
        )
        sub.add_parser("keys")
        sub.add_parser("purge")

    def handle(self, *args: Any, **options: Any) -> None:
        verb = options["verb"]
        if verb == "purge":
            self.stdout.write(f"Deleted {audit_purge_expired()} entries past retention.")
            return
        if verb == "seal":
            result = audit_seal()
            signed = result.checkpoints
            if options["checkpoint"]:
                signed += audit_checkpoints_sign(force=True)
            self.stdout.write(f"Sealed {result.sealed} entries; signed {signed} checkpoints.")
            return
        if verb == "keys":
            for key in audit_public_keys():
                role = "signs" if key["signing"] else "verifies"
                self.stdout.write(f"{key['key_id']} {key['public_key']} ({role})")
            return
        if verb == "verify":
            organization = organization_from(options["org"])
            report = audit_chain_verify(
                organization=organization, since=_when(options.get("since"), "since")
            )
            self._report(report)
            return
        if verb == "verify-export":
            self._verify_export(options["file"], options["public_key"])
            return
        if options.get("chain"):
            if options.get("kind") or options["format"] != "jsonl":
                raise CommandError("--chain exports the whole chain as JSON Lines: no --kind.")
            lines = chain_export_lines(
                organization=organization_from(options["org"]),
                since=_when(options.get("since"), "since"),
                until=_when(options.get("until"), "until"),
            )
            if options.get("output"):
                with open(options["output"], "wb") as out:
                    for line in lines:
                        out.write(line)
            else:
                for line in lines:
                    self.stdout.write(line.decode("utf-8"), ending="")
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

    def _verify_export(self, path: str, public_keys: list[str]) -> None:
        keys = []
        for text in public_keys:
            try:
                keys.append(public_key_from_text(text))
            except BadKey as exc:
                raise CommandError(f"--public-key {text[:60]}: {exc}") from None
        try:
            with open(path, "rb") as export:
                report = export_verify(export, public_keys=keys)
        except OSError as exc:
            raise CommandError(f"{path}: {exc.strerror}") from None
        self._report(report)

    def _report(self, report: Report) -> None:
        """Print what was checked; a problem ends the command with exit status 1."""
        for warning in report.warnings:
            self.stderr.write(f"warning: {warning}")
        if report.problem is not None:
            raise CommandError(f"FAILED ({report.org}): {report.problem}")
        if report.entries:
            span = f"seq {report.first_seq} to {report.last_seq}"
            signed = (
                f"signed through seq {report.signed_through}"
                if report.signed_through is not None
                else "no signed checkpoint"
            )
            self.stdout.write(
                f"OK ({report.org}): {report.entries} entries, {span}, "
                f"{report.checkpoints_verified} checkpoints verified, {signed}."
            )
        else:
            self.stdout.write(f"OK ({report.org}): no sealed entries.")
