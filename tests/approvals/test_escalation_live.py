"""Escalation with real Celery beat timing: a worker with its embedded beat (every 2 s
``approvals.expire_overdue``) escalates an undecided request at its deadline, the mail
path emails the new approvers (their one-click links are written by the worker), and the
request expires after the escalated deadline. Nothing in this process reads the request
through a path that would settle it itself, so each step is the beat's."""

from __future__ import annotations

import pytest
from django.db import transaction
from django.utils import timezone

from accounts.models import Membership
from approvals.models import ApprovalRequest, EmailLink
from audit.models import AuditEntry
from tests.approvals.conftest import approval_spec, request_create
from tests.factories import MembershipFactory, UserFactory
from tests.live import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.live]


def _field(request: ApprovalRequest, name: str):
    return ApprovalRequest.objects.filter(pk=request.pk).values_list(name, flat=True).get()


def test_the_beat_escalates_at_the_deadline_notifies_escalate_to_and_then_expires(
    celery_worker, org_a, agent_a
):
    dana = UserFactory(email="dana@example.com")
    MembershipFactory(user=dana, organization=org_a, role=Membership.Role.ADMIN)
    spec = approval_spec(
        approvers=("user:bob@example.com",),
        on_timeout="escalate",
        escalate_to=("role:admin",),
        escalate_timeout=4,
    )
    with transaction.atomic():
        request = request_create(agent_a, timeout_seconds=4, spec=spec)
        # Bob was told already (and needs no reminder): the organisation's email window is
        # open, so the escalation's email goes out at once rather than a minute later.
        ApprovalRequest.objects.filter(pk=request.pk).update(
            notified_at=timezone.now(), reminder_due_at=None
        )
    first_deadline = request.expires_at

    wait_until(lambda: _field(request, "escalations") == 1, timeout=30, what="the beat to escalate")
    second_deadline = _field(request, "expires_at")
    assert _field(request, "status") == "pending"
    assert _field(request, "approvers") == ["role:admin"]
    assert second_deadline > first_deadline

    def links_sent() -> set[str]:
        return set(EmailLink.objects.filter(request=request).values_list("user__email", flat=True))

    wait_until(
        lambda: links_sent() == {"alice@example.com", "dana@example.com"},
        timeout=30,
        what="the escalation email to the admins and owners",
    )

    wait_until(lambda: _field(request, "status") == "expired", timeout=30, what="the final expiry")
    entries = list(
        AuditEntry.objects.filter(action_id=request.action_id, kind="decision").order_by("id")
    )
    assert [e.decision for e in entries] == ["escalate", "expire"]
    assert entries[0].created_at >= first_deadline
    assert entries[1].created_at >= second_deadline
    assert links_sent() == {"alice@example.com", "dana@example.com"}  # never Bob again
