"""The audit chain's canonical form, its hashes, and the verifier shared by
``warden_audit verify`` (reading the database) and ``warden_audit verify-export`` (reading a
file, no database). docs/ARCHITECTURE.md ("Audit chain") describes the design.

Canonical form, version 1. A link's hash is::

    SHA-256( bytes.fromhex(prev) || canonical_json({"v": 1, "org": ORG, "seq": SEQ,
                                                    "entry": CONTENT}) )

``prev`` is the hash of the link before (64 zeros before the first), ORG the organisation's
public id, SEQ the link's position (1, 2, ...), and CONTENT every stored column of the
entry, by column name, except:

- ``id`` (a storage detail) and ``organization_id`` (ORG stands for it);
- foreign keys the database may clear (``on_delete=SET_NULL``: the acting user, key and
  agent, cleared when those are deleted); their snapshots (``actor_label``,
  ``agent_public_id``) are covered instead;
- empty values (NULL, "", {} and []), so that a column added later with an empty default
  leaves every earlier hash as it was (tests/audit/test_chain.py holds new columns to it).

Date-times are UTC, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``; JSON columns are their JSON value.
``canonical_json`` sorts keys, writes no spaces and no ASCII escapes, in UTF-8.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache
from typing import Any
from uuid import UUID

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.db import models

from audit.signing import canonical_json, checkpoint_message, key_id, verify

CANONICAL_VERSION = 1
GENESIS = "0" * 64


@cache
def chained_fields() -> tuple[models.Field, ...]:
    from audit.models import AuditEntry

    chosen = []
    for column in AuditEntry._meta.concrete_fields:
        if column.primary_key or column.name == "organization":
            continue
        if column.is_relation and column.remote_field.on_delete is models.SET_NULL:
            continue
        chosen.append(column)
    return tuple(chosen)


def chain_time(value: datetime) -> str:
    """How the chain writes a moment: UTC, microseconds, ``Z``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return chain_time(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (Decimal, UUID)):
        return str(value)
    return value


def is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, (str, dict, list)) and not value)


@cache
def _chained_attnames() -> tuple[str, ...]:
    return tuple(column.attname for column in chained_fields())


def entry_content(entry: models.Model) -> dict[str, Any]:
    """The entry's columns as the chain covers them (see the module's docstring)."""
    content: dict[str, Any] = {}
    values = entry.__dict__
    for attname in _chained_attnames():
        value = values[attname]
        if value is None or value == "" or value == {} or value == []:
            continue  # is_empty(), inline: the sealer calls this for every entry
        if not isinstance(value, (str, int, dict, list)):
            value = _plain(value)
        content[attname] = value
    return content


def link_hash(*, prev: str, org: str, seq: int, content: dict[str, Any]) -> str:
    document = {"v": CANONICAL_VERSION, "org": org, "seq": seq, "entry": content}
    return hashlib.sha256(bytes.fromhex(prev) + canonical_json(document)).hexdigest()


@dataclass(frozen=True, slots=True)
class CheckpointRecord:
    kind: str
    seq: int
    hash: str
    created_at: str  # as signed (wardenproject.jsonutil.iso)
    key_id: str
    signature: str


@dataclass(frozen=True, slots=True)
class Problem:
    seq: int | None
    entry: str | None
    message: str

    def __str__(self) -> str:
        where = []
        if self.entry:
            where.append(f"entry {self.entry}")
        if self.seq is not None:
            where.append(f"seq {self.seq}")
        return f"{' at '.join(where)}: {self.message}" if where else self.message


@dataclass
class Report:
    org: str
    entries: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    signed_through: int | None = None  # the last seq a verified signed checkpoint covers
    checkpoints_verified: int = 0
    problem: Problem | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None


class ChainVerifier:
    """Recompute a chain link by link; the first thing wrong becomes ``report.problem``.

    Feed links in ``seq`` order. Checkpoints are checked as the chain passes their ``seq``:
    a chain rewritten consistently after a change (every later hash recomputed) still
    differs from the signed head at the next checkpoint.
    """

    def __init__(
        self,
        *,
        org: str,
        public_keys: list[Ed25519PublicKey],
        checkpoints: list[CheckpointRecord],
    ) -> None:
        self.org = org
        self.report = Report(org=org)
        self._keys = {key_id(key): key for key in public_keys}
        self._running: str | None = None
        self._last_entry = ""
        self._last_checked: int | None = None
        self._checkpoints: dict[int, list[CheckpointRecord]] = {}
        for checkpoint in checkpoints:
            self._check_signature(checkpoint)
            self._checkpoints.setdefault(checkpoint.seq, []).append(checkpoint)

    def fail(self, seq: int | None, entry: str | None, message: str) -> None:
        if self.report.problem is None:
            self.report.problem = Problem(seq, entry, message)

    def _check_signature(self, checkpoint: CheckpointRecord) -> None:
        label = f"{checkpoint.kind} checkpoint at seq {checkpoint.seq} ({checkpoint.created_at})"
        if not checkpoint.signature:
            self.report.warnings.append(f"{label} is not signed (no signing key was set)")
            return
        key = self._keys.get(checkpoint.key_id)
        if key is None:
            self.fail(checkpoint.seq, None, f"{label} is signed by unknown key {checkpoint.key_id}")
            return
        message = checkpoint_message(
            org=self.org,
            kind=checkpoint.kind,
            seq=checkpoint.seq,
            chain_hash=checkpoint.hash,
            created_at=checkpoint.created_at,
        )
        if not verify(key, message, checkpoint.signature):
            self.fail(checkpoint.seq, None, f"{label}: the signature does not match (altered)")

    def _start(self, seq: int, prev: str, entry: str) -> None:
        self.report.first_seq = seq
        if seq == 1:
            if prev != GENESIS:
                self.fail(seq, entry, "the first link does not start from the genesis hash")
            return
        anchors = self._checkpoints.get(seq - 1, [])
        if not anchors:
            self.report.warnings.append(
                f"the chain is read from seq {seq}; no checkpoint vouches for the hash it "
                "starts from"
            )
            return
        for anchor in anchors:
            if anchor.hash != prev:
                self.fail(
                    seq,
                    entry,
                    f"does not follow the {anchor.kind} checkpoint at seq {anchor.seq}: the "
                    "history before it was changed",
                )
                return
        self._verified(seq - 1, anchors)

    def _verified(self, seq: int, checkpoints: list[CheckpointRecord]) -> None:
        signed = [c for c in checkpoints if c.signature]
        self.report.checkpoints_verified += len(signed)
        if signed:
            self.report.signed_through = seq
            self._last_checked = seq

    def feed(
        self, *, seq: int, prev: str, chain_hash: str, entry: str, content: dict[str, Any]
    ) -> None:
        if self.report.problem is not None:
            return
        last = self.report.last_seq
        if self._running is None:
            self._start(seq, prev, entry)
            running = prev
        else:
            running = self._running
            if seq > last + 1:  # type: ignore[operator]
                missing = f"{last + 1}" if seq == last + 2 else f"{last + 1} to {seq - 1}"  # type: ignore[operator]
                self.fail(seq, entry, f"the links at seq {missing} are missing (deleted)")
            elif seq <= last:  # type: ignore[operator]
                self.fail(seq, entry, f"comes after seq {last}: the chain was reordered")
            elif prev != running:
                self.fail(
                    seq,
                    entry,
                    f"does not follow the link at seq {last} (entry {self._last_entry}): an "
                    "entry was inserted, deleted or moved there",
                )
        if self.report.problem is not None:
            return
        computed = link_hash(prev=running, org=self.org, seq=seq, content=content)
        if computed != chain_hash:
            self.fail(seq, entry, "was changed: its content no longer matches its hash")
            return
        self._running = computed
        self._last_entry = entry
        self.report.last_seq = seq
        self.report.entries += 1
        checkpoints = self._checkpoints.get(seq, [])
        for checkpoint in checkpoints:
            if checkpoint.hash != computed:
                since = (
                    f"after seq {self._last_checked}" if self._last_checked else "from the start"
                )
                self.fail(
                    seq,
                    entry,
                    f"the chain up to here differs from the signed {checkpoint.kind} checkpoint "
                    f"of {checkpoint.created_at}: it was rewritten ({since}, up to here)",
                )
                return
        if checkpoints:
            self._verified(seq, checkpoints)

    def finish(self) -> Report:
        report = self.report
        if report.problem is None and report.last_seq is not None:
            beyond = [
                c
                for seq, cs in self._checkpoints.items()
                if seq > report.last_seq
                for c in cs
                if c.kind == "head"
            ]
            if beyond:
                far = max(beyond, key=lambda c: c.seq)
                self.fail(
                    report.last_seq + 1,
                    None,
                    f"the chain ends at seq {report.last_seq} but a checkpoint signed "
                    f"{far.created_at} covers seq {far.seq}: entries at the end were deleted",
                )
        if report.problem is None and report.last_seq is None:
            purged = max(
                (c.seq for cs in self._checkpoints.values() for c in cs if c.kind == "purge"),
                default=0,
            )
            heads = [
                c
                for cs in self._checkpoints.values()
                for c in cs
                if c.kind == "head" and c.seq > purged
            ]
            if heads:
                self.fail(None, None, "the chain is empty but a checkpoint covers entries")
        if report.problem is None and report.last_seq is not None:
            if report.signed_through is None:
                report.warnings.append("no signed checkpoint covers any of these entries")
            elif report.signed_through < report.last_seq:
                report.warnings.append(
                    f"seq {report.signed_through + 1} to {report.last_seq} are after the last "
                    "signed checkpoint (the next one signs them)"
                )
        return report
