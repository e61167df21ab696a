"""Reading approval requests."""

from __future__ import annotations

import time

from approvals.models import ApprovalRequest


def approval_wait_for_decision(*, action_id: str, timeout: float) -> str | None:
    """Block until the request leaves ``pending`` or ``timeout`` seconds pass.

    Returns the status then (None if there is no request). Simple database polling; the
    approvals issue replaces the wake-up with a notification so waiters resume at once.
    """
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        status = (
            ApprovalRequest.objects.filter(action_id=action_id)
            .values_list("status", flat=True)
            .first()
        )
        if status != ApprovalRequest.Status.PENDING or time.monotonic() >= deadline:
            return status
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
