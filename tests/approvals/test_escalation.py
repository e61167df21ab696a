"""Escalation and reminders, driven by the beat task's service (``approval_expire_overdue``)
under a frozen clock. The live worker-and-beat test is in test_escalation_live.py."""

from __future__ import annotations

from datetime import timedelta
from http import HTTPStatus

import pytest
from django.core import mail
from django.utils import timezone
from freezegun import freeze_time

from accounts.models import Membership
from approvals.models import ApprovalRequest
from approvals.services import (
    NotAnApprover,
    approval_decide,
    approval_expire,
    approval_expire_overdue,
)
from approvals.tasks import approvals_notify
from audit.models import AuditEntry
from tests.approvals.conftest import approval_spec, key_create, request_create
from tests.factories import MembershipFactory, UserFactory
from webhooks.models import Endpoint, Event

pytestmark = pytest.mark.django_db

TIMEOUT = 30 * 60


@pytest.fixture
def dana(org_a):
    user = UserFactory(email="dana@example.com")
    MembershipFactory(user=user, organization=org_a, role=Membership.Role.ADMIN)
    return user


def escalating(agent, **more) -> ApprovalRequest:
    """Bob decides first; after 30 minutes it goes to the admins, for 10 more minutes."""
    approval = {
        "approvers": ("user:bob@example.com",),
        "on_timeout": "escalate",
        "escalate_to": ("role:admin",),
        "escalate_timeout": 600,
        **more,
    }
    return request_create(agent, timeout_seconds=TIMEOUT, spec=approval_spec(**approval))


def test_an_overdue_escalating_request_passes_to_escalate_to_with_a_later_deadline(agent_a):
    with freeze_time("2026-03-02 09:00:00"):
        request = escalating(agent_a)
    with freeze_time("2026-03-02 09:30:01"):
        assert approval_expire_overdue() == 1
    request.refresh_from_db()
    assert request.status == "pending"
    assert request.approvers == ["role:admin"]
    assert request.escalate_to == []
    assert request.escalations == 1
    assert request.expires_at.isoformat() == "2026-03-02T09:40:01+00:00"


def test_after_the_last_deadline_it_expires_as_before(agent_a):
    with freeze_time("2026-03-02 09:00:00"):
        request = escalating(agent_a)
    with freeze_time("2026-03-02 09:30:01"):
        approval_expire_overdue()
    with freeze_time("2026-03-02 09:40:02"):
        assert approval_expire_overdue() == 1
    request.refresh_from_db()
    assert request.status == "expired"


def test_escalate_timeout_defaults_to_the_timeout(agent_a):
    with freeze_time("2026-03-02 09:00:00"):
        request = escalating(agent_a, escalate_timeout=None)
    with freeze_time("2026-03-02 09:30:00"):
        approval_expire_overdue()
    request.refresh_from_db()
    assert request.expires_at.isoformat() == "2026-03-02T10:00:00+00:00"


def test_on_timeout_deny_expires_at_the_deadline(agent_a):
    with freeze_time("2026-03-02 09:00:00"):
        request = request_create(
            agent_a, timeout_seconds=TIMEOUT, spec=approval_spec(approvers=("role:admin",))
        )
    with freeze_time("2026-03-02 09:30:00"):
        approval_expire_overdue()
    request.refresh_from_db()
    assert request.status == "expired"


def test_two_workers_seeing_the_same_overdue_request_escalate_it_once(agent_a):
    with freeze_time("2026-03-02 09:00:00"):
        request = escalating(agent_a)
    stale = ApprovalRequest.objects.get(pk=request.pk)  # both workers read it before either wrote
    with freeze_time("2026-03-02 09:30:01"):
        assert approval_expire(request=request) is True
        assert approval_expire(request=stale) is False
    request.refresh_from_db()
    assert request.escalations == 1
    assert request.status == "pending"
    escalations = AuditEntry.objects.filter(action_id=request.action_id, decision="escalate")
    assert escalations.count() == 1


def test_the_escalation_is_audited_and_emits_its_event(org_a, agent_a):
    Endpoint.objects.create(
        organization=org_a,
        url="https://hooks.example.com/x",
        events=["approval.escalated"],
        secret="s",
    )
    with freeze_time("2026-03-02 09:00:00"):
        request = escalating(agent_a)
    with freeze_time("2026-03-02 09:30:01"):
        approval_expire_overdue()
    entry = AuditEntry.objects.get(action_id=request.action_id, decision="escalate")
    assert entry.source == "system"
    assert "Escalated to role:admin" in entry.reason
    event = Event.objects.get(event_type="approval.escalated")
    assert event.data["status"] == "pending"
    assert event.data["approvers"] == ["role:admin"]
    assert event.data["expires_at"].startswith("2026-03-02T09:40:01")


def test_after_escalation_the_first_approver_is_refused_and_an_admin_decides(agent_a, bob, dana):
    with freeze_time("2026-03-02 09:00:00"):
        request = escalating(agent_a)
    with freeze_time("2026-03-02 09:30:01"):
        approval_expire_overdue()
        with pytest.raises(NotAnApprover, match="role:admin"):
            approval_decide(request_or_action_id=request, actor_user=bob, approve=True)
        decided = approval_decide(request_or_action_id=request, actor_user=dana, approve=True)
    assert decided.status == "approved"


def test_a_decision_that_arrives_after_the_deadline_escalates_first_then_checks_routing(
    agent_a, bob, dana
):
    """No beat ran: the decision itself settles the overdue request, under its lock."""
    with freeze_time("2026-03-02 09:00:00"):
        request = escalating(agent_a)
    with freeze_time("2026-03-02 09:30:01"):
        with pytest.raises(NotAnApprover):
            approval_decide(request_or_action_id=request, actor_user=bob, approve=True)
        request.refresh_from_db()
        assert request.status == "pending"
        assert request.approvers == ["role:admin"]  # the escalation stands
        assert approval_decide(request_or_action_id=request, actor_user=dana, approve=True)


def test_the_agent_reads_pending_with_the_new_deadline_during_escalation(agent_a, keys, key_client):
    with freeze_time("2026-03-02 09:00:00"):
        request = escalating(agent_a)
    with freeze_time("2026-03-02 09:30:01"):
        response = key_client(keys["agent"]).get(f"/api/v1/actions/{request.action_id}")
    assert response.status_code == HTTPStatus.OK
    assert response.json()["status"] == "pending"
    assert response.json()["expires_at"].startswith("2026-03-02T09:40:01")


def test_the_long_poll_keeps_waiting_through_an_escalation(agent_a):
    from approvals.selectors import approval_wait_for_decision

    request = escalating(agent_a)
    ApprovalRequest.objects.filter(pk=request.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert approval_wait_for_decision(action_id=request.action_id, timeout=0.2) == "pending"
    request.refresh_from_db()
    assert request.escalations == 1
    assert request.expires_at > timezone.now()


def test_the_escalated_approvers_are_emailed(org_a, agent_a, dana):
    with freeze_time("2026-03-02 09:00:00"):
        escalating(agent_a)
        approvals_notify(org_a.pk)
    assert [m.to[0] for m in mail.outbox] == ["bob@example.com"]
    mail.outbox.clear()
    with freeze_time("2026-03-02 09:30:01"):
        approval_expire_overdue()
        approvals_notify(org_a.pk)
    assert sorted(m.to[0] for m in mail.outbox) == ["alice@example.com", "dana@example.com"]
    assert all(m.subject.startswith("Escalated: ") for m in mail.outbox)


def test_an_approver_key_of_a_first_stage_approver_is_refused_after_escalation(
    org_a, agent_a, bob, key_client
):
    with freeze_time("2026-03-02 09:00:00"):
        request = escalating(agent_a)
    key = key_create(org_a, "approver", created_by=bob)
    with freeze_time("2026-03-02 09:30:01"):
        response = key_client(key).post(
            f"/api/v1/actions/{request.action_id}/approve", {}, format="json"
        )
    assert response.status_code == HTTPStatus.FORBIDDEN


# --- reminders -------------------------------------------------------------------------------


def test_a_reminder_goes_to_the_current_approvers_at_half_time_once(org_a, agent_a):
    with freeze_time("2026-03-02 09:00:00"):
        escalating(agent_a)
        approvals_notify(org_a.pk)
    mail.outbox.clear()
    with freeze_time("2026-03-02 09:14:59"):
        approval_expire_overdue()
        approvals_notify(org_a.pk)
    assert mail.outbox == []  # not yet
    with freeze_time("2026-03-02 09:15:00"):
        approval_expire_overdue()
        approvals_notify(org_a.pk)
    assert [(m.to[0], m.subject[:10]) for m in mail.outbox] == [("bob@example.com", "Reminder: ")]
    mail.outbox.clear()
    with freeze_time("2026-03-02 09:20:00"):
        approval_expire_overdue()
        approvals_notify(org_a.pk)
    assert mail.outbox == []  # once per stage


def test_each_stage_has_its_own_reminder(org_a, agent_a, dana):
    with freeze_time("2026-03-02 09:00:00"):
        request = escalating(agent_a)
        approvals_notify(org_a.pk)
    with freeze_time("2026-03-02 09:30:01"):
        approval_expire_overdue()
        approvals_notify(org_a.pk)  # the escalation email
    mail.outbox.clear()
    with freeze_time("2026-03-02 09:35:01"):  # half of escalate_timeout (600 s)
        approval_expire_overdue()
        approvals_notify(org_a.pk)
    assert sorted(m.to[0] for m in mail.outbox) == ["alice@example.com", "dana@example.com"]
    assert all(m.subject.startswith("Reminder: ") for m in mail.outbox)
    request.refresh_from_db()
    assert request.reminder_due_at is None


def test_a_request_not_emailed_yet_gets_no_reminder(org_a, agent_a):
    with freeze_time("2026-03-02 09:00:00"):
        request = escalating(agent_a)
    with freeze_time("2026-03-02 09:15:00"):
        approval_expire_overdue()
    request.refresh_from_db()
    assert request.reminder_due_at is None
    assert request.notice == ""  # its first email is still to come, as a new request


def test_a_decided_request_gets_no_reminder(org_a, agent_a, bob):
    with freeze_time("2026-03-02 09:00:00"):
        request = escalating(agent_a)
        approvals_notify(org_a.pk)
        approval_decide(request_or_action_id=request, actor_user=bob, approve=False)
    mail.outbox.clear()
    with freeze_time("2026-03-02 09:15:00"):
        approval_expire_overdue()
        approvals_notify(org_a.pk)
    assert mail.outbox == []


def test_the_agent_can_cancel_a_request_whose_deadline_passed_into_an_escalation(
    agent_a, keys, key_client
):
    with freeze_time("2026-03-02 09:00:00"):
        request = escalating(agent_a)
    with freeze_time("2026-03-02 09:30:01"):
        response = key_client(keys["agent"]).post(
            f"/api/v1/actions/{request.action_id}/cancel", {}, format="json"
        )
    assert response.status_code == HTTPStatus.OK, response.content
    request.refresh_from_db()
    assert (request.status, request.escalations) == ("cancelled", 1)
