from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.conf import settings
from django.core import mail
from django.utils import timezone

from approvals.models import ApprovalRequest
from approvals.notifications import DIGEST_WINDOW, approval_notify_reviewers
from approvals.tasks import approvals_notify

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(monkeypatch) -> list[tuple[tuple, datetime | None]]:
    """The notify tasks queued (args, eta), instead of sending them to the broker."""
    calls: list[tuple[tuple, datetime | None]] = []
    monkeypatch.setattr(
        approvals_notify,
        "apply_async",
        lambda args, kwargs, **options: calls.append((tuple(args), options.get("eta"))),
    )
    return calls


def emails_to(address: str) -> list:
    return [message for message in mail.outbox if message.to == [address]]


def test_creating_a_request_queues_the_notification_after_commit(
    django_capture_on_commit_callbacks, make_request, queued
):
    with django_capture_on_commit_callbacks(execute=True):
        request = make_request()
        assert queued == []  # nothing before commit
    assert [args for args, _ in queued] == [(request.organization_id,)]
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


def test_requests_waiting_together_become_one_digest(org_a, make_request):
    created = [make_request(action=f"tool.{n}") for n in range(5)]
    approvals_notify(org_a.pk)
    assert len(mail.outbox) == 2  # one digest for alice, one for bob
    digest = mail.outbox[0]
    assert "5 approval requests" in digest.subject
    for request in created:
        assert f"/approvals/{request.action_id}/" in digest.body
    assert ApprovalRequest.objects.filter(notified_at__isnull=True).count() == 0


def test_requests_arriving_within_the_window_wait_for_the_next_digest(org_a, make_request):
    make_request(action="tool.first")
    approvals_notify(org_a.pk)
    mail.outbox.clear()
    late = make_request(action="tool.late")
    notified = approvals_notify(org_a.pk)
    assert notified == []
    assert mail.outbox == []
    late.refresh_from_db()
    assert late.notified_at is None


def test_a_burst_of_held_calls_is_one_email_per_reviewer_per_window_from_one_task_per_window(
    org_a, make_request, django_capture_on_commit_callbacks, queued
):
    """20 held calls in a burst: the first is emailed at once; the 19 after it queue ONE
    task, due when the window ends, which sends each reviewer one digest of all 19."""
    with django_capture_on_commit_callbacks(execute=True):
        first = make_request(action="tool.first")
    ((args, eta),) = queued
    assert args == (org_a.pk,) and (eta is None or eta <= timezone.now())
    approvals_notify(*args)
    sent_at = ApprovalRequest.objects.get(pk=first.pk).notified_at
    assert [len(emails_to(a)) for a in ("alice@example.com", "bob@example.com")] == [1, 1]

    queued.clear()
    with django_capture_on_commit_callbacks(execute=True):
        burst = [make_request(action=f"tool.{n}") for n in range(19)]
    ((args, eta),) = queued  # one task for the 19, not one per call
    assert eta == sent_at + DIGEST_WINDOW

    queued.clear()
    early = approval_notify_reviewers(organization_id=org_a.pk, now=eta - timedelta(seconds=1))
    assert early.sent == 0
    assert [len(emails_to(a)) for a in ("alice@example.com", "bob@example.com")] == [1, 1]

    result = approval_notify_reviewers(organization_id=org_a.pk, now=eta)
    assert sorted(result.notified) == sorted(r.action_id for r in burst)
    for address in ("alice@example.com", "bob@example.com"):
        _, digest = emails_to(address)
        assert "19 approval requests" in digest.subject
        assert all(f"/approvals/{r.action_id}/" in digest.body for r in burst)
    assert len(mail.outbox) == 4  # 20 held calls, two windows: two emails per reviewer


def test_decided_requests_are_not_emailed(org_a, bob, pending):
    from approvals.services import approval_decide

    approval_decide(request_or_action_id=pending, actor_user=bob, approve=True)
    approvals_notify(org_a.pk)
    assert mail.outbox == []


def test_the_sweeper_queues_email_for_requests_whose_task_was_lost(
    org_a, make_request, queued, django_capture_on_commit_callbacks
):
    from approvals.notifications import notifications_sweep

    request = make_request()  # created without its on-commit hook: its task never existed
    assert notifications_sweep() == []  # too recent: its task may still be on its way
    ApprovalRequest.objects.filter(pk=request.pk).update(
        requested_at=timezone.now() - 3 * DIGEST_WINDOW
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert notifications_sweep() == [org_a.pk]
    assert [args for args, _ in queued] == [(org_a.pk,)]
    assert notifications_sweep() == []  # a task is queued now


def test_an_organisations_reviewer_email_is_not_held_up_by_a_lost_task_for_long(
    org_a, make_request, queued, django_capture_on_commit_callbacks
):
    from approvals.models import NotificationWindow
    from approvals.notifications import LOST_TASK_AFTER, reviewers_notify_queue

    NotificationWindow.objects.create(
        organization=org_a, task_due_at=timezone.now() - LOST_TASK_AFTER - timedelta(seconds=1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert reviewers_notify_queue(organization_id=org_a.pk)
    assert [args for args, _ in queued] == [(org_a.pk,)]
