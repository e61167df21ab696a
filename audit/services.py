"""Writing the audit log. Entries are only ever added; retention is the only deletion."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, connections, models, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import Organization, User
from accounts.plans import Limit, plan_limit
from audit.chain import GENESIS, chain_time, entry_content, link_hash
from audit.keyring import signing_key
from audit.models import (
    AppendOnlyError,
    AuditChainHead,
    AuditCheckpoint,
    AuditEntry,
    AuditLink,
    AuditSealState,
)
from audit.signing import checkpoint_message, key_id, sign
from wardenproject.db import row_insert

logger = logging.getLogger(__name__)
_clock = time.time  # the sealer's clock for gaps (tests move it)


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
    entry = _entry_build(
        organization=organization,
        kind=kind,
        actor_user=actor_user,
        actor_key=actor_key,
        public_id=public_id,
        **fields,
    )
    entry.save(force_insert=True)
    return entry


def _entry_build(
    *, actor_user: User | None, actor_key: Any | None, public_id: str | None, **fields: Any
) -> AuditEntry:
    """The one way an entry is made: ``fields`` are AuditEntry columns (the organisation,
    or its id for entries written in bulk)."""
    entry = AuditEntry(
        actor_user=actor_user,
        actor_key=actor_key,
        actor_label=fields.pop("actor_label", None)
        or actor_label(user=actor_user, api_key=actor_key),
        **fields,
    )
    if public_id:
        entry.public_id = public_id
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


def _change_fields(
    *,
    target: models.Model,
    target_id: str | None,
    verb: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    source: str,
) -> dict[str, Any]:
    return {
        "kind": AuditEntry.Kind.CONFIG,
        "target_type": target._meta.model_name or "",
        "target_id": target_id or getattr(target, "public_id", None) or str(target.pk),
        "reason": f"{verb} {target._meta.verbose_name} {target}",
        "source": source,
        "data": {"verb": verb, "before": before, "after": after},
    }


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
    target_id: str | None = None,
) -> AuditEntry:
    """Record a configuration change: who, when, what, before and after."""
    return audit_record(
        organization=organization,
        actor_user=actor_user,
        actor_key=actor_key,
        **_change_fields(
            target=target, target_id=target_id, verb=verb, before=before, after=after, source=source
        ),
    )


OPERATOR_CHANGE_BATCH = 500


def audit_record_operator_change(
    *,
    organizations: models.QuerySet[Organization],
    actor_user: User | None,
    target: models.Model,
    verb: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    source: str = "",
    target_id: str | None = None,
) -> int:
    """Record an operator's change that belongs to no organisation (a plan's terms, a token
    price) as a configuration entry in the log of each organisation it affects; returns how
    many entries were written.

    Every entry lives in an organisation's chain, so a change to the shared catalogue is
    written where it takes effect: the same entry as ``audit_record_change`` would write,
    once per organisation, inserted in batches. The cost grows with the number of
    organisations affected, never with the log.
    """
    fields = _change_fields(
        target=target, target_id=target_id, verb=verb, before=before, after=after, source=source
    )
    ids = list(organizations.order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(ids), OPERATOR_CHANGE_BATCH):
        AuditEntry.objects.bulk_create(
            [
                _entry_build(
                    organization_id=organization_id,
                    actor_user=actor_user,
                    actor_key=None,
                    public_id=None,
                    **fields,
                )
                for organization_id in ids[start : start + OPERATOR_CHANGE_BATCH]
            ]
        )
    return len(ids)


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


PURGE_CHUNK = 1000


def audit_purge_before(*, organization: Organization, before: datetime) -> int:
    """Delete the organisation's entries older than ``before`` from the start of its chain;
    returns how many went.

    Only a prefix of the chain goes: the purge stops at the first link whose entry is not
    older than ``before`` (the chain's order is the order entries were sealed, which a late
    commit can make differ slightly from their times). A signed ``purge`` checkpoint keeps
    the last purged hash, so the rest of the chain still verifies. Pending entries are
    sealed first; an entry that never got into the chain is kept (``verify`` reports it).
    """
    audit_seal()
    deleted = 0
    last: tuple[int, str] | None = None
    with audit_purge_allowed():
        while True:
            chunk = list(
                AuditLink.objects.filter(organization=organization)
                .order_by("seq")
                .values_list("id", "seq", "hash", "entry_id", "entry__created_at")[:PURGE_CHUNK]
            )
            old = []
            for row in chunk:
                if row[4] >= before:
                    break
                old.append(row)
            if old:
                models.QuerySet.delete(AuditLink.objects.filter(id__in=[row[0] for row in old]))
                gone, _ = models.QuerySet.delete(
                    AuditEntry.objects.filter(id__in=[row[3] for row in old])
                )
                deleted += gone
                last = (old[-1][1], old[-1][2])
            if len(old) < PURGE_CHUNK:
                break
        if last is not None:
            _checkpoints_create(
                [(organization.pk, organization.public_id, last[0], last[1])],
                kind=AuditCheckpoint.Kind.PURGE,
                now=timezone.now(),
            )
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


# --- The chain ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SealResult:
    sealed: int
    checkpoints: int


def audit_seal(*, max_batches: int = 20) -> SealResult:
    """Link every entry committed since the last run into its organisation's chain, then
    sign the chain heads that are due (the beat task ``audit.seal``, every
    WARDEN_AUDIT_SEAL_INTERVAL seconds). One sealer at a time: a run that finds another at
    work returns at once."""
    sealed = 0
    for _ in range(max_batches):
        count, more = _seal_batch(batch_size=settings.WARDEN_AUDIT_SEAL_BATCH)
        sealed += count
        if not more:
            break
    return SealResult(sealed=sealed, checkpoints=audit_checkpoints_sign())


def _seal_state_locked() -> AuditSealState | None:
    state = AuditSealState.objects.select_for_update(skip_locked=True).filter(pk=1).first()
    if state is None and not AuditSealState.objects.filter(pk=1).exists():
        AuditSealState.objects.get_or_create(pk=1)
        state = AuditSealState.objects.select_for_update(skip_locked=True).filter(pk=1).first()
    return state


MAX_GAP_RANGES = 200


def _seal_batch(*, batch_size: int) -> tuple[int, bool]:
    """Seal one batch; return how many entries it sealed and whether more may be waiting.

    Ids are handed out when a row is inserted but become visible when its transaction
    commits, so a smaller id can appear after a larger one was sealed. Every id up to the
    watermark has been seen, except the gaps: ranges of ids that were not visible when the
    watermark passed them. Each run reads the entries above the watermark (an index range
    on the primary key) and the entries in the gaps (a few more ranges), so a run's cost
    depends on what is new, never on the size of the log. A gap is given up after
    WARDEN_AUDIT_SEAL_LOOKBACK seconds (ids of rolled-back inserts stay gaps for ever); an
    entry that commits even later is left out of the chain, and ``verify`` names it.
    """
    now = timezone.now()
    clock = _clock()
    lookback = settings.WARDEN_AUDIT_SEAL_LOOKBACK
    with transaction.atomic():
        state = _seal_state_locked()
        if state is None:
            return 0, False  # another sealer is at work
        gaps = []
        for low, high, seen in state.gaps:
            if clock - seen < lookback:
                gaps.append([low, high, seen])
            else:
                logger.warning(
                    "audit sealer: entry ids %s-%s never became visible in %s s; given up "
                    "(rolled back, or committed too late to be chained)",
                    low,
                    high,
                    lookback,
                )
        late: list[AuditEntry] = []
        if gaps:
            if len(gaps) <= MAX_GAP_RANGES:
                in_gaps = Q()
                for low, high, _ in gaps:
                    in_gaps |= Q(id__gte=low, id__lte=high)
                pending = AuditEntry.objects.filter(in_gaps)
            else:
                # Very many holes (a burst of rolled-back inserts): one range over all of
                # them, minus what is sealed, rather than a WHERE of thousands of ORs.
                pending = AuditEntry.objects.filter(
                    id__gte=min(g[0] for g in gaps),
                    id__lte=max(g[1] for g in gaps),
                    link__isnull=True,
                )
            late = [
                entry
                for entry in pending.order_by("id")[:batch_size]
                if any(low <= entry.id <= high for low, high, _ in gaps)
            ]
            gaps = _gaps_without(gaps, [entry.id for entry in late])
        fresh = list(AuditEntry.objects.filter(id__gt=state.watermark).order_by("id")[:batch_size])
        expected = state.watermark + 1
        for entry in fresh:
            if entry.id > expected:
                gaps.append([expected, entry.id - 1, clock])
            expected = entry.id + 1
        entries = late + fresh
        if entries:
            _link(entries, now=now)
        if fresh or state.gaps != gaps:
            if fresh:
                state.watermark = fresh[-1].id
            state.gaps = gaps
            state.save(update_fields=["watermark", "gaps"])
    return len(entries), len(fresh) == batch_size or len(late) == batch_size


def _gaps_without(gaps: list[list[Any]], found: list[int]) -> list[list[Any]]:
    """The gap ranges minus the ids that turned up (``found`` sorted)."""
    left = []
    for low, high, seen in gaps:
        start = low
        for entry_id in found:
            if entry_id < start or entry_id > high:
                continue
            if entry_id > start:
                left.append([start, entry_id - 1, seen])
            start = entry_id + 1
        if start <= high:
            left.append([start, high, seen])
    return left


def _link(entries: list[AuditEntry], *, now: datetime) -> None:
    org_ids = {entry.organization_id for entry in entries}
    public_ids = dict(Organization.objects.filter(id__in=org_ids).values_list("id", "public_id"))
    heads = {head.organization_id: head for head in AuditChainHead.objects.filter(pk__in=org_ids)}
    known = set(heads)
    links = []
    for entry in entries:
        head = heads.get(entry.organization_id)
        if head is None:
            head = heads[entry.organization_id] = AuditChainHead(
                organization_id=entry.organization_id, seq=0, hash=GENESIS
            )
        seq = head.seq + 1
        chain_hash = link_hash(
            prev=head.hash,
            org=public_ids[entry.organization_id],
            seq=seq,
            content=entry_content(entry),
        )
        links.append(
            AuditLink(
                organization_id=entry.organization_id,
                seq=seq,
                entry_id=entry.id,
                prev=head.hash,
                hash=chain_hash,
                sealed_at=now,
            )
        )
        head.seq, head.hash = seq, chain_hash
    _links_insert(links)
    AuditChainHead.objects.bulk_create([h for o, h in heads.items() if o not in known])
    moved = [h for o, h in heads.items() if o in known]
    if connection.vendor != "postgresql":
        AuditChainHead.objects.bulk_update(moved, ["seq", "hash"], batch_size=500)
        return
    with connection.cursor() as cursor:  # one statement over arrays, as _links_insert
        cursor.execute(
            "UPDATE audit_auditchainhead AS head SET seq = moved.seq, hash = moved.hash"
            " FROM unnest(%s::bigint[], %s::bigint[], %s::varchar[]) AS moved(org, seq, hash)"
            " WHERE head.organization_id = moved.org",
            [
                [h.organization_id for h in moved],
                [h.seq for h in moved],
                [h.hash for h in moved],
            ],
        )


def _links_insert(links: list[AuditLink]) -> None:
    """Insert the batch's links: on PostgreSQL one statement over arrays (seven parameters
    whatever the batch's size; a multi-row VALUES of 5,000 rows costs more to build and
    parse than the hashing), elsewhere ``bulk_create``."""
    if connection.vendor != "postgresql":
        AuditLink.objects.bulk_create(links, batch_size=500)
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_auditlink"
            " (organization_id, seq, entry_id, version, prev, hash, sealed_at)"
            " SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::smallint[],"
            " %s::varchar[], %s::varchar[], %s::timestamptz[])",
            [
                [link.organization_id for link in links],
                [link.seq for link in links],
                [link.entry_id for link in links],
                [link.version for link in links],
                [link.prev for link in links],
                [link.hash for link in links],
                [link.sealed_at for link in links],
            ],
        )


def audit_checkpoints_sign(*, now: datetime | None = None, force: bool = False) -> int:
    """Sign the head of every chain with entries no checkpoint covers, unless its last
    checkpoint is younger than WARDEN_AUDIT_CHECKPOINT_INTERVAL (``force``: sign anyway).
    Returns how many were signed; without a signing key, none (and says so in the log)."""
    now = now or timezone.now()
    due = AuditChainHead.objects.filter(seq__gt=F("checkpoint_seq"))
    if not force:
        interval = timedelta(seconds=settings.WARDEN_AUDIT_CHECKPOINT_INTERVAL)
        due = due.filter(Q(checkpoint_at__isnull=True) | Q(checkpoint_at__lte=now - interval))
    if signing_key() is None:
        if due.exists():
            logger.error(
                "audit: no WARDEN_AUDIT_SIGNING_KEYS, so no checkpoint is signed; the chain "
                "is kept but nothing proves it was not rewritten"
            )
        return 0
    signed = 0
    with transaction.atomic():
        heads = list(
            due.select_for_update(of=("self",), skip_locked=True)
            .select_related("organization")
            .order_by("pk")[:1000]
        )
        _checkpoints_create(
            [(h.organization_id, h.organization.public_id, h.seq, h.hash) for h in heads],
            kind=AuditCheckpoint.Kind.HEAD,
            now=now,
        )
        for head in heads:
            head.checkpoint_seq, head.checkpoint_at = head.seq, now
        AuditChainHead.objects.bulk_update(heads, ["checkpoint_seq", "checkpoint_at"])
        signed = len(heads)
    return signed


def _checkpoints_create(
    heads: list[tuple[int, str, int, str]], *, kind: str, now: datetime
) -> list[AuditCheckpoint]:
    """Sign ``(organization id, its public id, seq, hash)`` heads; unsigned without a key."""
    key = signing_key()
    at = chain_time(now)
    checkpoints = []
    for organization_id, org, seq, chain_hash in heads:
        checkpoint = AuditCheckpoint(
            organization_id=organization_id, kind=kind, seq=seq, hash=chain_hash, created_at=now
        )
        if key is not None:
            message = checkpoint_message(
                org=org, kind=kind, seq=seq, chain_hash=chain_hash, created_at=at
            )
            checkpoint.key_id = key_id(key.public_key())
            checkpoint.signature = sign(key, message)
        checkpoints.append(checkpoint)
    return AuditCheckpoint.objects.bulk_create(checkpoints)
