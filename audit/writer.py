"""Group commit of check audit rows: concurrent requests' rows in one INSERT and one commit.

Every allowed or blocked check writes its audit row, committed before the answer leaves.
Written by each request on its own, that is one statement, one commit and one WAL flush per
check, and on PostgreSQL the commit costs more CPU than the rest of the check. So the request
threads of a process take turns as the *leader*: a thread whose row arrives while no write
is in flight writes it at once, as before; rows that arrive while a write is in flight queue
up, and when that write has committed, the first of them becomes the leader and writes the
whole queue (up to ``WARDEN_AUDIT_BATCH_MAX`` rows) with one multi-row INSERT in autocommit:
one statement, all rows or none, one commit. Every thread answers only after its own row has
committed, so durability is what it was; a lone request pays nothing extra, and under load
one commit carries many rows.

Batches grow further when the leader knows more rows are on their way: a check announces
itself when it starts (``expect()``, through ``audit_entry_expect``), and a leader about to
write waits, up to ``WARDEN_AUDIT_BATCH_WAIT_US``, while announced checks of its process
have not queued their rows yet. It waits only for work that is already running (the other
threads are evaluating their calls meanwhile, so the CPU does not idle), never for requests
that may or may not come: a check alone in its process writes at once. A row in a batch
of eight costs the web process and PostgreSQL about half the CPU of a row in a batch of two
(docs/PERFORMANCE.md).

Failures stay with the rows they belong to: if a batch fails on a row's data (an integrity
or data error), its rows are written one by one, so only that row's request fails. Any other
error (the database is down) fails every request of the batch, each answering 503 as a
direct write would.
"""

from __future__ import annotations

import os
import threading
import time

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


class _Expected:
    """The announcement of one check (see ``GroupCommit.expect``); a context manager."""

    __slots__ = ("counted", "group")

    def __init__(self, group: GroupCommit) -> None:
        self.group = group
        self.counted = False

    def __enter__(self) -> None:
        group = self.group
        if getattr(group._local, "expected", False):
            return  # nested in an announcement of the same thread: that one counts
        with group._lock:
            group._expected += 1
        group._local.expected = self.counted = True

    def __exit__(self, *exc_info: object) -> None:
        group = self.group
        if self.counted and group._local.expected:
            # The check ended without writing through group commit (an approval, an error).
            group._local.expected = False
            with group._lock:
                group._expected -= 1
                group._wake_leader()


class GroupCommit:
    def __init__(self, *, alias: str, batch_max: int, wait_max: float = 0.0) -> None:
        self.alias = alias
        self.batch_max = batch_max
        self.wait_max = wait_max  # seconds a leader may wait for announced rows
        self.batches = 0  # INSERT statements that committed, for tests and benchmarks
        self.rows = 0  # rows those statements carried
        self._start_state()
        os.register_at_fork(after_in_child=self._start_state)

    def _start_state(self) -> None:
        # A forked child must not inherit a lock or a queue from its parent.
        self._lock = threading.Lock()
        self._rows_arrived = threading.Condition(self._lock)
        self._queue: list[_Handoff] = []
        self._leading = False  # invariant: the queue is empty unless a leader is at work
        self._expected = 0  # announced checks whose rows have not queued yet
        self._leader_waiting = False
        self._local = threading.local()  # .expected: this thread's row is announced

    def expect(self) -> _Expected:
        """``with group.expect(): ...`` around the work of a check that will probably end
        with ``write()`` from the same thread: until it writes, or leaves the block without
        writing, a leader may wait for its row (at most ``wait_max``)."""
        return _Expected(self)

    def _wake_leader(self) -> None:
        # Called with the lock held.
        if self._leader_waiting and (self._expected <= 0 or len(self._queue) >= self.batch_max):
            self._rows_arrived.notify()

    def write(self, entry: AuditEntry) -> AuditEntry:
        """Insert ``entry``; return once it is committed, or raise the write's error."""
        handoff = _Handoff(entry)
        local = self._local
        announced = getattr(local, "expected", False)
        if announced:
            local.expected = False
        with self._lock:
            self._queue.append(handoff)
            if announced:
                self._expected -= 1
            follower = self._leading
            self._leading = True
            if follower:
                self._wake_leader()
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
            if self._expected > 0 and self.wait_max > 0 and len(self._queue) < self.batch_max:
                self._wait_for_expected_rows()
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

    def _wait_for_expected_rows(self) -> None:
        """With the lock held: wait until every announced check has queued its row (or left),
        the batch is full, or ``wait_max`` has passed."""
        deadline = time.monotonic() + self.wait_max
        self._leader_waiting = True
        try:
            while self._expected > 0 and len(self._queue) < self.batch_max:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._rows_arrived.wait(remaining)
        finally:
            self._leader_waiting = False

    def _write(self, batch: list[_Handoff]) -> None:
        try:
            rows_insert([handoff.entry for handoff in batch], using=self.alias)
            self.batches += 1
            self.rows += len(batch)
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
                    wait_max=settings.WARDEN_AUDIT_BATCH_WAIT_US / 1_000_000,
                )
    return _group_commit
