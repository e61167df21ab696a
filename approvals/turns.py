"""One organisation's decisions take turns across the whole deployment.

A decision costs the web process ~20 times the CPU of a check (docs/PERFORMANCE.md, "Checks
during a burst of decisions"). Reviewers or scripts deciding flat out in parallel would
otherwise take the cores, and the GIL of the web processes they share with the check
endpoints, from the checks. So ``approval_decide`` takes its organisation's turn first in
its transaction: a PostgreSQL transaction-level advisory lock, released by the commit or
rollback. Only decisions take it: checks, claims, expiry sweeps and other organisations'
decisions never wait for it. It is taken before the request's row lock, always in that
order, so it adds no deadlock.

A decision waits for its turn at most ``WARDEN_DECISION_LOCK_TIMEOUT`` seconds, then is
refused with ``DecisionsBusy`` (503, ``busy``, ``Retry-After``): its transaction rolls back,
nothing is written and a retry is safe. The timeout bounds that wait only (the
connection's own ``lock_timeout`` is put back once the turn is taken, within the
transaction). The lock is re-entrant within a transaction, so decisions nested in one (an
email link's) take it again without waiting.

An API decision (``POST /api/v1/actions/{id}/approve|deny``, and the Arden SDK's
``POST /approve|deny/{id}``) takes the turn for the whole request instead
(``decision_turn``): the reads that authorise it, the decision and the answer. Sixteen
scripts deciding at once otherwise still did all of that side by side, and the checks due
in the burst's first moments waited for it (docs/PERFORMANCE.md).

SQLite lets one writer at a time anyway: nothing to take there.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import OperationalError, connection, transaction

from wardenproject.errors import DomainError

if TYPE_CHECKING:
    from accounts.models import Organization

# First key of the two-key advisory locks of decisions: "AD" (approval decisions). Other
# two-key users must keep off it: webhooks/dispatch.py's slots use 0x5748xxxx ("WH").
DECISION_LOCK_NAMESPACE = 0x41440000
RETRY_AFTER_SECONDS = 1
_LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for lock_timeout


class DecisionsBusy(DomainError):
    status = HTTPStatus.SERVICE_UNAVAILABLE
    code = "busy"


def _int4(value: int) -> int:
    """An id as the int4 the two-key lock functions take (ids past 2**31 wrap around: two
    organisations would share turns, which is slower, never wrong)."""
    return (value + 2**31) % 2**32 - 2**31


# The organisation whose turn this thread holds for a whole request (``decision_turn``):
# a decision inside it needs no statement of its own for the turn.
_held = threading.local()


def decision_turn_take(*, organization_id: int) -> None:
    """Wait for the organisation's turn to decide, in the current transaction (PostgreSQL);
    ``DecisionsBusy`` if it does not come within ``WARDEN_DECISION_LOCK_TIMEOUT``."""
    if connection.vendor != "postgresql":
        return
    if getattr(_held, "organization_id", None) == organization_id:
        return  # the whole request holds it already
    if not connection.in_atomic_block:
        raise RuntimeError("a decision's turn is taken inside its transaction")
    timeout_ms = max(1, round(settings.WARDEN_DECISION_LOCK_TIMEOUT * 1000))
    # One statement, evaluated inside out (OFFSET 0 keeps each subquery from being merged
    # into the one around it): read the connection's lock_timeout, bound the wait (SET LOCAL:
    # this transaction only), wait for the turn, then put the connection's own value back,
    # so the bound applies to this wait alone.
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('lock_timeout', previous, true) FROM ("
                " SELECT previous, pg_advisory_xact_lock(%s, %s) FROM ("
                "  SELECT previous, set_config('lock_timeout', %s, true) FROM ("
                "   SELECT current_setting('lock_timeout') AS previous OFFSET 0"
                "  ) AS session OFFSET 0"
                " ) AS bounded OFFSET 0"
                ") AS turn",
                [DECISION_LOCK_NAMESPACE, _int4(organization_id), f"{timeout_ms}ms"],
            )
    except OperationalError as error:
        if getattr(error.__cause__, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
            raise  # a lost connection is an outage, answered as one
        raise DecisionsBusy(
            "Other decisions of this organisation are being taken; nothing was decided. Try again.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from None


@contextmanager
def decision_turn(*, organization: Organization | None) -> Iterator[None]:
    """Run the body (a whole decision request) in the caller's organisation's turn (none
    for a caller without one), in one transaction. A refusal the body raises (a
    ``DomainError``: already decided, not an approver, ...) keeps what the decision wrote
    before it, as it would without the turn (a request found past its deadline is settled
    as expired), and is raised after the commit; any other error rolls everything back."""
    refusal: DomainError | None = None
    organization_id = organization.pk if organization is not None else None
    with transaction.atomic():
        if organization_id is not None:
            decision_turn_take(organization_id=organization_id)
        _held.organization_id = organization_id
        try:
            yield
        except DomainError as error:
            refusal = error
        finally:
            _held.organization_id = None
    if refusal is not None:
        raise refusal
