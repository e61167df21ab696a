"""Group commit of check audit rows: concurrent requests' rows in one INSERT and one commit.

Every allowed or blocked check writes its audit row, committed before the answer leaves.
Written by each request on its own, that is one statement, one commit and one WAL flush per
check, and on PostgreSQL the commit costs more CPU than the rest of the check. So the request
threads of a process take turns as the *leader*: a thread whose row arrives while no write
is in flight writes it at once, as before; rows that arrive while a write is in flight queue
up, and when that write has committed, the first of them becomes the leader and writes the
whole queue (up to ``WARDEN_AUDIT_BATCH_MAX`` rows) with one INSERT in autocommit (its rows
as one JSON parameter on PostgreSQL, see wardenproject/db.py): one statement, all rows or
none, one commit. Every thread answers only after its own row has committed, so durability
is what it was; a lone request pays nothing extra, and under load one commit carries many
rows.

Failures stay with the rows they belong to: if a batch fails on a row's data (an integrity
or data error), its rows are written one by one, so only that row's request fails. Any other
error (the database is down) fails every request of the batch, each answering 503 as a
direct write would.
"""

from __future__ import annotations

import os
import threading

from django.db import DataError, IntegrityError

from audit.models import AuditEntry
from wardenproject.db import rows_insert


class _Handoff:
    __slots__ = ("done", "entry", "error", "lead")

    def __init__(self, entry: AuditEntry) -> None:
        self.entry = entry
        self.error: BaseException | None = None
        self.lead = False
        # Held until the row is written or its thread is made leader. A bare lock is the
        # cheapest hand-off (threading.Event is a Condition written in Python).
        self.done = threading.Lock()
        self.done.acquire()


class GroupCommit:
    def __init__(self, *, alias: str, batch_max: int) -> None:
        self.alias = alias
        self.batch_max = batch_max
        self.batches = 0  # INSERT statements that committed, for tests and benchmarks
        self._start_state()
        os.register_at_fork(after_in_child=self._start_state)

    def _start_state(self) -> None:
        # A forked child must not inherit a lock or a queue from its parent.
        self._lock = threading.Lock()
        self._queue: list[_Handoff] = []
        self._leading = False  # invariant: the queue is empty unless a leader is at work

    def write(self, entry: AuditEntry) -> AuditEntry:
        """Insert ``entry``; return once it is committed, or raise the write's error."""
        handoff = _Handoff(entry)
        with self._lock:
            self._queue.append(handoff)
            follower = self._leading
            self._leading = True
        if not follower:
            self._lead()
        else:
            handoff.done.acquire()  # until a leader wrote the row, or made this thread leader
            if handoff.lead:
                self._lead()
        if handoff.error is not None:
            raise handoff.error
        return entry

    def _lead(self) -> None:
        """Write the queue's first batch (this thread's row comes first), release its
        threads, then pass the lead to the next queued row or give it up."""
        with self._lock:
            batch = self._queue[: self.batch_max]
            del self._queue[: self.batch_max]
        try:
            self._write(batch)
        finally:
            with self._lock:
                successor = self._queue[0] if self._queue else None
                if successor is None:
                    self._leading = False
                else:
                    successor.lead = True
            for handoff in batch[1:]:
                handoff.done.release()
            if successor is not None:
                successor.done.release()

    def _write(self, batch: list[_Handoff]) -> None:
        try:
            rows_insert([handoff.entry for handoff in batch], using=self.alias)
            self.batches += 1
        except (IntegrityError, DataError) as exc:
            if len(batch) == 1:
                batch[0].error = exc
                return
            for handoff in batch:
                self._write([handoff])
        except BaseException as exc:
            # The leader (first in the batch) raises the error itself; every other thread
            # gets its own copy, as one exception object raised in several threads at once
            # would have its traceback rewritten under them.
            batch[0].error = exc
            for handoff in batch[1:]:
                handoff.error = _error_copy(exc)


def _error_copy(exc: BaseException) -> BaseException:
    try:
        copy = type(exc)(*exc.args)
    except Exception:
        return exc
    copy.__cause__ = exc
    return copy


_group_commit: GroupCommit | None = None
_group_commit_lock = threading.Lock()


def audit_group_commit() -> GroupCommit:
    """The process's group commit for check rows (through ``WARDEN_AUDIT_WRITE_ALIAS``)."""
    global _group_commit
    if _group_commit is None:
        from django.conf import settings

        with _group_commit_lock:
            if _group_commit is None:
                _group_commit = GroupCommit(
                    alias=settings.WARDEN_AUDIT_WRITE_ALIAS,
                    batch_max=settings.WARDEN_AUDIT_BATCH_MAX,
                )
    return _group_commit
