"""Writing the audit log. Entries are only ever added; retention is the only deletion."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, connections, models, transaction
from django.utils import timezone

from accounts.models import Organization, User
from accounts.plans import Limit, plan_limit
from audit.models import AppendOnlyError, AuditEntry
from wardenproject.db import row_insert


def actor_label(*, user: User | None, api_key: Any | None) -> str:
    """How the log names who acted: the user's email, the key's prefix and name, or system."""
    if user is not None:
        return user.email
    if api_key is not None:
        return f"key {api_key.prefix}… ({api_key.name})"
    return "system"


def audit_record(
    *,
    organization: Organization,
    kind: str,
    actor_user: User | None = None,
    actor_key: Any | None = None,
    public_id: str | None = None,
    **fields: Any,
) -> AuditEntry:
    """Append one entry. ``fields`` are AuditEntry columns (action, arguments, data, ...)."""
    entry = AuditEntry(
        organization=organization,
        kind=kind,
        actor_user=actor_user,
        actor_key=actor_key,
        actor_label=fields.pop("actor_label", None)
        or actor_label(user=actor_user, api_key=actor_key),
        **fields,
    )
    if public_id:
        entry.public_id = public_id
    entry.save(force_insert=True)
    return entry


def audit_entry_insert(entry: AuditEntry, *, using: str = "default") -> AuditEntry:
    """Write a new entry with one INSERT and none of ``Model.save()``'s machinery.

    The check endpoint writes one row per tool call (see wardenproject/db.py).
    """
    if not entry._state.adding:
        raise AppendOnlyError("Audit entries cannot be changed.")
    return row_insert(entry, using=using)


def audit_entry_commit(entry: AuditEntry) -> AuditEntry:
    """Write a new entry and commit it (allowed and blocked checks), through
    ``WARDEN_AUDIT_WRITE_ALIAS``: with concurrent checks' rows in one INSERT when group commit
    is on (audit/writer.py), else with one autocommitted INSERT of its own.

    Inside a transaction the entry joins it instead: committed along with other threads'
    rows, it would escape the caller's rollback.
    """
    alias = settings.WARDEN_AUDIT_WRITE_ALIAS
    if settings.WARDEN_AUDIT_GROUP_COMMIT and not (
        connections["default"].in_atomic_block
        or (alias != "default" and connections[alias].in_atomic_block)
    ):
        if not entry._state.adding:
            raise AppendOnlyError("Audit entries cannot be changed.")
        from audit.writer import audit_group_commit

        return audit_group_commit().write(entry)
    return audit_entry_insert(entry, using=alias)


def model_snapshot(instance: models.Model, fields: list[str] | None = None) -> dict[str, Any]:
    """A JSON-safe dict of a model's concrete fields, for before/after in config entries."""
    data: dict[str, Any] = {}
    for field in instance._meta.concrete_fields:
        if fields is not None and field.name not in fields:
            continue
        if field.name in {"hashed_key", "secret", "previous_secret", "password"}:
            continue  # never write a secret (even hashed) into the log
        value = field.value_from_object(instance)
        if field.is_relation:
            related = getattr(instance, field.name, None)
            value = getattr(related, "public_id", None) or (str(related) if related else None)
        elif hasattr(value, "isoformat"):
            value = value.isoformat()
        elif not isinstance(value, (str, int, float, bool, list, dict, type(None))):
            value = str(value)
        data[field.name] = value
    return data


def audit_record_change(
    *,
    organization: Organization,
    actor_user: User | None,
    actor_key: Any | None = None,
    target: models.Model,
    verb: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    source: str = "",
) -> AuditEntry:
    """Record a configuration change: who, when, what, before and after."""
    return audit_record(
        organization=organization,
        kind=AuditEntry.Kind.CONFIG,
        actor_user=actor_user,
        actor_key=actor_key,
        target_type=target._meta.model_name or "",
        target_id=getattr(target, "public_id", None) or str(target.pk),
        reason=f"{verb} {target._meta.verbose_name} {target}",
        source=source,
        data={"verb": verb, "before": before, "after": after},
    )


@contextmanager
def audit_purge_allowed() -> Iterator[None]:
    """A transaction in which audit entries may be deleted (retention, organisation deletion).

    On PostgreSQL the append-only trigger refuses DELETE unless the transaction-local setting
    ``warden.audit_purge`` is on; elsewhere only the model guards exist.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL warden.audit_purge = 'on'")
        yield


def audit_purge_before(*, organization: Organization, before: datetime) -> int:
    """Delete the organisation's entries older than ``before``; returns how many went."""
    with audit_purge_allowed():
        queryset = AuditEntry.objects.filter(organization=organization, created_at__lt=before)
        deleted, _ = models.QuerySet.delete(queryset)
    return deleted


def audit_purge_expired(*, now: datetime | None = None) -> int:
    """Apply every organisation's plan retention (``audit_retention_days``; empty = forever)."""
    now = now or timezone.now()
    total = 0
    for organization in Organization.objects.select_related("plan"):
        days = plan_limit(organization, Limit.AUDIT_RETENTION_DAYS)
        if days is None:
            continue
        total += audit_purge_before(organization=organization, before=now - timedelta(days=days))
    return total
