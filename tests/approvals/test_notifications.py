from __future__ import annotations

import pytest
from django.conf import settings
from django.core import mail

from approvals.models import ApprovalRequest
from approvals.tasks import approvals_notify

pytestmark = pytest.mark.django_db


def test_creating_a_request_queues_the_notification_after_commit(
    django_capture_on_commit_callbacks, make_request, monkeypatch
):
    queued = []
    monkeypatch.setattr(
        approvals_notify, "apply_async", lambda args, kwargs, **options: queued.append(args)
    )
    with django_capture_on_commit_callbacks() as callbacks:
        request = make_request()
        assert queued == []  # nothing before commit
    for callback in callbacks:
        callback()
    assert queued == [(request.organization_id,)]
    assert mail.outbox == []  # nothing is sent in the request path


def test_reviewers_get_an_email_linking_to_the_request(org_a, pending):
    approvals_notify(org_a.pk)
    recipients = sorted(message.to[0] for message in mail.outbox)
    assert recipients == ["alice@example.com", "bob@example.com"]  # not the viewer
    message = mail.outbox[0]
    assert "stripe.refund" in message.subject
    assert f"{settings.WARDEN_BASE_URL}/approvals/{pending.action_id}/" in message.body
    assert "amount=500" in message.body
    assert "customer=cus_1" in message.body


def test_a_request_is_emailed_once_even_if_the_task_runs_twice(org_a, pending):
    approvals_notify(org_a.pk)
    approvals_notify(org_a.pk)
    assert len(mail.outbox) == 2  # alice and bob, once each
    pending.refresh_from_db()
    assert pending.notified_at is not None


def test_a_reviewer_who_turned_emails_off_gets_none(org_a, alice, bob, pending):
    bob.notify_approvals = False
    bob.save()
    approvals_notify(org_a.pk)
    assert [message.to for message in mail.outbox] == [["alice@example.com"]]


def test_no_email_is_sent_when_every_reviewer_turned_them_off(org_a, alice, bob, pending):
    for user in (alice, bob):
        user.notify_approvals = False
        user.save()
    approvals_notify(org_a.pk)
    assert mail.outbox == []


def test_a_burst_of_requests_becomes_one_digest(org_a, make_request):
    created = [make_request(action=f"tool.{n}") for n in range(5)]
    approvals_notify(org_a.pk)
    assert len(mail.outbox) == 2  # one digest for alice, one for bob
    digest = mail.outbox[0]
    assert "5 approval requests" in digest.subject
    for request in created:
        assert f"/approvals/{request.action_id}/" in digest.body
    assert ApprovalRequest.objects.filter(notified_at__isnull=True).count() == 0


def test_requests_arriving_during_a_burst_wait_for_the_next_digest(org_a, make_request):
    for n in range(4):
        make_request(action=f"tool.{n}")
    approvals_notify(org_a.pk)
    mail.outbox.clear()
    late = make_request(action="tool.late")
    notified = approvals_notify(org_a.pk)
    assert notified == []
    assert mail.outbox == []
    late.refresh_from_db()
    assert late.notified_at is None


def test_decided_requests_are_not_emailed(org_a, bob, pending):
    from approvals.services import approval_decide

    approval_decide(request_or_action_id=pending, actor_user=bob, approve=True)
    approvals_notify(org_a.pk)
    assert mail.outbox == []
