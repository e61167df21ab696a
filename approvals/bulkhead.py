"""A bound on the decisions one organisation runs at once in a web process, so a flood of
them cannot starve checks.

A decision costs the web process ~20 times the CPU of a check (docs/PERFORMANCE.md, "Checks
during a burst of decisions"). Reviewers or scripts deciding flat out, in parallel, would
otherwise take the cores, and the GIL of the processes they share with the check endpoints,
from the checks. At most ``WARDEN_DECISION_CONCURRENCY`` decisions of one organisation run
at once in each web process (0: no bound); the others wait for a slot up to
``WARDEN_DECISION_WAIT`` seconds, holding their web thread but no CPU, and are then refused
with ``DecisionsBusy`` (503, ``busy``, ``Retry-After``) before anything was written, so a
retry is safe.

Per organisation, not per process: a decision of one organisation never waits for another
organisation's (a slow one, or a flood), as it never waits for their row locks.

A slot is per thread and re-entrant: a bulk decision, or an email link's decision, takes one
slot for all it decides, and ``approval_decide`` inside it does not wait again. The process
keeps a count only for organisations with a decision in progress.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus

from django.conf import settings

from wardenproject.errors import DomainError

RETRY_AFTER_SECONDS = 1


class DecisionsBusy(DomainError):
    status = HTTPStatus.SERVICE_UNAVAILABLE
    code = "busy"


_changed = threading.Condition()
_running: dict[int, int] = {}  # organisation id -> decisions in progress in this process
_held = threading.local()  # .depth: {organisation id: nesting depth} of this thread


@contextmanager
def decision_slot(*, organization_id: int) -> Iterator[None]:
    """Run the block in one of the process's decision slots for the organisation;
    ``DecisionsBusy`` if none frees up in time."""
    depths: dict[int, int] = _held.__dict__.setdefault("depth", {})
    size = settings.WARDEN_DECISION_CONCURRENCY
    if depths.get(organization_id) or size <= 0:  # held by this thread already, or no bound
        depths[organization_id] = depths.get(organization_id, 0) + 1
        try:
            yield
        finally:
            depths[organization_id] -= 1
            if not depths[organization_id]:
                del depths[organization_id]
        return
    with _changed:
        free = _changed.wait_for(
            lambda: _running.get(organization_id, 0) < size,
            timeout=settings.WARDEN_DECISION_WAIT,
        )
        if not free:
            raise DecisionsBusy(
                "Too many decisions of this organisation are being taken at once; nothing "
                "was decided. Try again.",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        _running[organization_id] = _running.get(organization_id, 0) + 1
    depths[organization_id] = 1
    try:
        yield
    finally:
        del depths[organization_id]
        with _changed:
            left = _running[organization_id] - 1
            if left:
                _running[organization_id] = left
            else:
                del _running[organization_id]
            _changed.notify_all()
