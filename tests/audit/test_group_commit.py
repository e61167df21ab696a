"""Group commit of check rows (audit/writer.py), against PostgreSQL with real threads.

To make a batch form on purpose, another connection holds a SHARE lock on the audit table:
the first writer's INSERT waits on it with its row, the next rows queue up behind it, and
releasing the lock lets them through.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, connections, transaction
from django.utils import timezone

from audit.models import AuditEntry
from audit.services import audit_entry_commit
from audit.writer import GroupCommit
from wardenproject.ids import public_id

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
checks = AuditEntry.objects.filter(kind=AuditEntry.Kind.CHECK)


def check_entry(agent: Any, **fields: Any) -> AuditEntry:
    values = {
        "public_id": public_id("act"),
        "organization_id": agent.organization_id,
        "kind": AuditEntry.Kind.CHECK,
        "created_at": timezone.now(),
        "agent": agent,
        "agent_public_id": agent.public_id,
        "action": "kb.search",
        "arguments": {"q": "refund"},
        "environment": "live",
        "decision": "allow",
        "status": "allowed",
        "reason": "no_policy_configured",
        "source": "native",
        **fields,
    }
    return AuditEntry(**values)


def raw_connection() -> psycopg.Connection:
    params = connection.get_connection_params()
    return psycopg.connect(**{k: v for k, v in params.items() if k != "cursor_factory"})


@contextmanager
def audit_table_locked() -> Iterator[psycopg.Connection]:
    """Hold a SHARE lock on the audit table (INSERTs wait) until the block ends."""
    blocker = raw_connection()
    try:
        blocker.execute("BEGIN")
        blocker.execute("LOCK TABLE audit_auditentry IN SHARE MODE")
        yield blocker
    finally:
        blocker.rollback()
        blocker.close()


class Writer(threading.Thread):
    """One request thread: writes one entry, remembers the outcome, closes its connection."""

    def __init__(self, write: Callable[[AuditEntry], AuditEntry], entry: AuditEntry) -> None:
        super().__init__(daemon=True)
        self.write, self.entry = write, entry
        self.error: BaseException | None = None
        self.backend_pid: int | None = None

    def run(self) -> None:
        try:
            connection.ensure_connection()
            self.backend_pid = connection.connection.info.backend_pid
            self.write(self.entry)
        except BaseException as exc:
            self.error = exc
        finally:
            connection.close()


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def waiting_on_lock(blocker: psycopg.Connection) -> int:
    sql = "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = %s::regclass"
    return blocker.execute(sql, ["audit_auditentry"]).fetchone()[0]


def queued(group: GroupCommit) -> int:
    with group._lock:
        return len(group._queue)


@dataclass
class Queued:
    blocker: psycopg.Connection
    leader: Writer
    followers: list[Writer]


@contextmanager
def queued_behind_a_waiting_write(
    group: GroupCommit, leader_entry: AuditEntry, entries: list[AuditEntry]
) -> Iterator[Queued]:
    """A leader whose INSERT waits on the table lock, and ``entries`` queued behind it; the
    lock goes when the block ends, and every thread has finished after it."""
    with audit_table_locked() as blocker:
        leader = Writer(group.write, leader_entry)
        leader.start()
        wait_until(lambda: waiting_on_lock(blocker) == 1)
        followers = [Writer(group.write, entry) for entry in entries]
        for follower in followers:
            follower.start()
        wait_until(lambda: queued(group) == len(entries))
        yield Queued(blocker, leader, followers)
    for thread in [leader, *followers]:
        thread.join(10)


def test_rows_that_arrive_during_a_write_are_committed_together(support_bot):
    group = GroupCommit(alias="default", batch_max=100)
    entries = [check_entry(support_bot) for _ in range(5)]
    with queued_behind_a_waiting_write(group, check_entry(support_bot), entries) as batch:
        assert not checks.exists()  # nobody answered before the commit
    threads = [batch.leader, *batch.followers]
    assert all(thread.error is None for thread in threads)
    assert group.batches == 2  # the leader's own row, then the five that queued behind it
    stored = dict(checks.values_list("public_id", "pk"))
    for thread in threads:
        assert stored[thread.entry.public_id] == thread.entry.pk


def test_a_bad_row_fails_only_its_own_request(support_bot):
    group = GroupCommit(alias="default", batch_max=100)
    bad_entry = check_entry(support_bot, organization_id=987654321)
    entries = [check_entry(support_bot), bad_entry, check_entry(support_bot)]
    with queued_behind_a_waiting_write(group, check_entry(support_bot), entries) as batch:
        pass
    bad = next(thread for thread in batch.followers if thread.entry is bad_entry)
    good = [thread for thread in [batch.leader, *batch.followers] if thread is not bad]
    assert isinstance(bad.error, IntegrityError)
    assert all(thread.error is None for thread in good)
    written = set(checks.values_list("public_id", flat=True))
    assert written == {thread.entry.public_id for thread in good}


def test_a_write_that_loses_its_connection_fails_its_request_and_the_queue_moves_on(support_bot):
    group = GroupCommit(alias="default", batch_max=100)
    entries = [check_entry(support_bot) for _ in range(3)]
    with queued_behind_a_waiting_write(group, check_entry(support_bot), entries) as batch:
        batch.blocker.execute("SELECT pg_terminate_backend(%s)", [batch.leader.backend_pid])
        batch.leader.join(10)
    assert isinstance(batch.leader.error, OperationalError)  # answered 503 by the API
    assert all(follower.error is None for follower in batch.followers)
    written = set(checks.values_list("public_id", flat=True))
    assert written == {follower.entry.public_id for follower in batch.followers}


def test_many_concurrent_checks_all_get_their_committed_row(support_bot):
    group = GroupCommit(alias="default", batch_max=7)
    threads = [Writer(group.write, check_entry(support_bot)) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
        assert thread.error is None
    stored = dict(checks.values_list("public_id", "pk"))
    assert len(stored) == 40
    assert all(stored[thread.entry.public_id] == thread.entry.pk for thread in threads)


def test_inside_a_transaction_the_row_joins_it_and_rolls_back_with_it(support_bot):
    assert settings.WARDEN_AUDIT_GROUP_COMMIT
    entry = check_entry(support_bot)
    with pytest.raises(RuntimeError), transaction.atomic():
        audit_entry_commit(entry)
        assert connections["default"].in_atomic_block
        raise RuntimeError("roll back")
    assert not AuditEntry.objects.filter(public_id=entry.public_id).exists()


def test_outside_a_transaction_the_row_is_committed_when_the_call_returns(support_bot):
    entry = audit_entry_commit(check_entry(support_bot))
    other = raw_connection()
    try:
        row = other.execute(
            "SELECT id FROM audit_auditentry WHERE public_id = %s", [entry.public_id]
        ).fetchone()
    finally:
        other.close()
    assert row == (entry.pk,)
