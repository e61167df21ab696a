from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from accounts.models import Membership
from approvals.models import ApprovalRequest, ApprovalVote
from approvals.selectors import approval_compat_status, approval_get_for_org
from approvals.services import (
    approval_cancel,
    approval_claim,
    approval_decide,
    approval_expire,
    approval_expire_overdue,
)
from audit.models import AuditEntry
from tests.approvals.conftest import key_create, request_create
from tests.factories import MembershipFactory, UserFactory, plan
from wardenproject.errors import Conflict, Forbidden, NotFound, PlanRequired
from webhooks.models import Event

pytestmark = pytest.mark.django_db


def _overdue(request: ApprovalRequest) -> ApprovalRequest:
    ApprovalRequest.objects.filter(pk=request.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    request.refresh_from_db()
    return request


# --- who may decide -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (Membership.Role.OWNER, True),
        (Membership.Role.ADMIN, True),
        (Membership.Role.APPROVER, True),
        (Membership.Role.VIEWER, False),
    ],
)
def test_members_decide_according_to_their_role(org_a, pending, role, allowed):
    user = UserFactory(email=f"{role}@example.com")
    MembershipFactory(user=user, organization=org_a, role=role)
    if allowed:
        decided = approval_decide(
            request_or_action_id=pending.action_id, actor_user=user, approve=True
        )
        assert decided.status == ApprovalRequest.Status.APPROVED
    else:
        with pytest.raises(Forbidden):
            approval_decide(request_or_action_id=pending.action_id, actor_user=user, approve=True)
        pending.refresh_from_db()
        assert pending.status == ApprovalRequest.Status.PENDING


@pytest.mark.parametrize(
    ("kind", "allowed"), [("approver", True), ("agent", False), ("org", False)]
)
def test_keys_decide_only_when_they_are_approver_keys(org_a, agent_a, pending, kind, allowed):
    key = key_create(org_a, kind, agent_a).model
    if allowed:
        decided = approval_decide(request_or_action_id=pending, actor_key=key, approve=False)
        assert decided.status == ApprovalRequest.Status.DENIED
        assert decided.decided_by_key == key
    else:
        with pytest.raises(Forbidden):
            approval_decide(request_or_action_id=pending, actor_key=key, approve=True)


def test_an_outsider_gets_not_found(charlie, org_c, pending):
    with pytest.raises(NotFound):
        approval_decide(request_or_action_id=pending.action_id, actor_user=charlie, approve=True)


def test_an_approver_key_of_another_organisation_gets_not_found(org_c, pending):
    key = key_create(org_c, "approver").model
    with pytest.raises(NotFound):
        approval_decide(request_or_action_id=pending.action_id, actor_key=key, approve=True)


# --- what a decision records ----------------------------------------------------------------


def test_approving_records_who_when_and_notes(bob, pending):
    decided = approval_decide(
        request_or_action_id=pending, actor_user=bob, approve=True, notes="checked with finance"
    )
    assert decided.status == ApprovalRequest.Status.APPROVED
    assert decided.decided_by == bob
    assert decided.decided_by_label == "bob@example.com"
    assert decided.notes == "checked with finance"
    assert decided.decided_at is not None


def test_a_decision_writes_an_audit_entry_with_the_notes(bob, pending):
    approval_decide(request_or_action_id=pending, actor_user=bob, approve=False, notes="no")
    entry = AuditEntry.objects.get(kind=AuditEntry.Kind.DECISION, action_id=pending.action_id)
    assert entry.actor_user == bob
    assert entry.decision == "deny"
    assert entry.status == "denied"
    assert entry.data["notes"] == "no"


@pytest.mark.parametrize(
    ("approve", "event_type"), [(True, "approval.approved"), (False, "approval.rejected")]
)
def test_a_decision_emits_its_event(bob, pending, approve, event_type):
    approval_decide(request_or_action_id=pending, actor_user=bob, approve=approve)
    event = Event.objects.get(action_id=pending.action_id, event_type=event_type)
    assert event.data["status"] == ("approved" if approve else "denied")
    assert event.data["decided_by"] == "bob@example.com"


def test_creating_a_request_emits_the_pending_event(pending):
    assert Event.objects.filter(
        action_id=pending.action_id, event_type="log.pending_approval"
    ).exists()


def test_deciding_a_decided_request_is_a_conflict_naming_the_standing_outcome(alice, bob, pending):
    approval_decide(request_or_action_id=pending, actor_user=bob, approve=True)
    with pytest.raises(Conflict) as raised:
        approval_decide(request_or_action_id=pending, actor_user=alice, approve=False)
    assert raised.value.extra["status"] == "approved"
    pending.refresh_from_db()
    assert pending.status == ApprovalRequest.Status.APPROVED


def test_overly_long_notes_are_refused(bob, pending):
    with pytest.raises(Exception) as raised:
        approval_decide(
            request_or_action_id=pending, actor_user=bob, approve=True, notes="x" * 5000
        )
    assert getattr(raised.value, "field", None) == "notes"


# --- expiry ---------------------------------------------------------------------------------


def test_the_expiry_sweep_expires_overdue_requests_with_audit_and_event(make_request):
    overdue = _overdue(make_request())
    fresh = make_request()
    assert approval_expire_overdue() == 1
    overdue.refresh_from_db()
    fresh.refresh_from_db()
    assert overdue.status == ApprovalRequest.Status.EXPIRED
    assert fresh.status == ApprovalRequest.Status.PENDING
    assert Event.objects.filter(action_id=overdue.action_id, event_type="approval.expired").exists()
    assert AuditEntry.objects.filter(action_id=overdue.action_id, decision="expire").exists()


def test_the_expiry_sweep_never_overrides_a_decision(bob, pending):
    approval_decide(request_or_action_id=pending, actor_user=bob, approve=True)
    _overdue(ApprovalRequest.objects.get(pk=pending.pk))
    assert approval_expire_overdue() == 0
    pending.refresh_from_db()
    assert pending.status == ApprovalRequest.Status.APPROVED


def test_deciding_after_the_deadline_is_a_conflict_and_the_request_reads_expired(bob, pending):
    _overdue(pending)
    with pytest.raises(Conflict) as raised:
        approval_decide(request_or_action_id=pending, actor_user=bob, approve=True)
    assert raised.value.extra["status"] == "expired"
    pending.refresh_from_db()
    assert pending.status == ApprovalRequest.Status.EXPIRED
    assert Event.objects.filter(action_id=pending.action_id, event_type="approval.expired").exists()


def test_a_past_deadline_request_reads_as_expired_before_the_sweep_runs(org_a, pending):
    _overdue(pending)
    assert approval_get_for_org(organization=org_a, action_id=pending.action_id).status == (
        "expired"
    )


def test_an_expired_request_reads_as_denied_with_a_message_for_arden(org_a, pending):
    _overdue(pending)
    approval_expire_overdue()
    pending.refresh_from_db()
    status, message = approval_compat_status(pending)
    assert status == "denied"
    assert "expired" in message


# --- quorum ---------------------------------------------------------------------------------


@pytest.fixture
def business_org(org_a):
    org_a.plan = plan("business")
    org_a.save()
    return org_a


def test_quorum_needs_distinct_approvers(business_org, alice, bob, make_request):
    request = make_request(approvals_required=2)
    first = approval_decide(request_or_action_id=request, actor_user=bob, approve=True)
    assert first.status == ApprovalRequest.Status.PENDING
    second = approval_decide(request_or_action_id=request, actor_user=alice, approve=True)
    assert second.status == ApprovalRequest.Status.APPROVED
    assert second.votes.filter(vote=ApprovalVote.Vote.APPROVE).count() == 2


def test_the_same_person_approving_twice_does_not_count_twice(business_org, bob, make_request):
    request = make_request(approvals_required=2)
    approval_decide(request_or_action_id=request, actor_user=bob, approve=True)
    with pytest.raises(Conflict) as raised:
        approval_decide(request_or_action_id=request, actor_user=bob, approve=True)
    assert raised.value.code == "already_voted"
    request.refresh_from_db()
    assert request.status == ApprovalRequest.Status.PENDING
    assert request.votes.count() == 1


def test_one_denial_denies_a_quorum_request(business_org, alice, bob, make_request):
    request = make_request(approvals_required=3)
    approval_decide(request_or_action_id=request, actor_user=bob, approve=True)
    denied = approval_decide(request_or_action_id=request, actor_user=alice, approve=False)
    assert denied.status == ApprovalRequest.Status.DENIED


def test_a_quorum_vote_is_audited_but_emits_no_decision_event(business_org, bob, make_request):
    request = make_request(approvals_required=2)
    approval_decide(request_or_action_id=request, actor_user=bob, approve=True)
    assert AuditEntry.objects.filter(action_id=request.action_id, decision="approve").exists()
    assert not Event.objects.filter(
        action_id=request.action_id, event_type="approval.approved"
    ).exists()


def test_quorum_approval_is_refused_below_business_with_the_plan_message(bob, make_request):
    request = make_request(approvals_required=2)  # Acme is on Pro
    with pytest.raises(PlanRequired) as raised:
        approval_decide(request_or_action_id=request, actor_user=bob, approve=True)
    assert "Business" in raised.value.detail
    request.refresh_from_db()
    assert request.votes.count() == 0


def test_a_quorum_request_can_still_be_denied_after_a_downgrade(bob, make_request):
    request = make_request(approvals_required=2)
    assert approval_decide(request_or_action_id=request, actor_user=bob, approve=False).status == (
        "denied"
    )


# --- cancel and claim -----------------------------------------------------------------------


def test_the_agent_cancels_its_own_pending_request(keys, pending):
    cancelled = approval_cancel(request_or_action_id=pending, actor_key=keys["agent"].model)
    assert cancelled.status == ApprovalRequest.Status.CANCELLED
    assert approval_compat_status(cancelled)[0] == "denied"


def test_another_agents_key_cannot_cancel(org_a, pending):
    from agents.models import Agent

    other = Agent.objects.create(organization=org_a, name="other-bot")
    with pytest.raises(NotFound):
        approval_cancel(
            request_or_action_id=pending, actor_key=key_create(org_a, "agent", other).model
        )


def test_cancelling_a_decided_request_is_a_conflict(bob, keys, pending):
    approval_decide(request_or_action_id=pending, actor_user=bob, approve=False)
    with pytest.raises(Conflict) as raised:
        approval_cancel(request_or_action_id=pending, actor_key=keys["agent"].model)
    assert raised.value.extra["status"] == "denied"


def test_the_first_claim_of_an_approved_request_succeeds_and_later_ones_conflict(
    bob, keys, pending
):
    approval_decide(request_or_action_id=pending, actor_user=bob, approve=True)
    claimed = approval_claim(request_or_action_id=pending, actor_key=keys["agent"].model)
    assert claimed.claimed_at is not None
    with pytest.raises(Conflict) as raised:
        approval_claim(request_or_action_id=pending, actor_key=keys["org"].model)
    assert raised.value.code == "already_claimed"


def test_a_pending_request_cannot_be_claimed(keys, pending):
    with pytest.raises(Conflict) as raised:
        approval_claim(request_or_action_id=pending, actor_key=keys["agent"].model)
    assert raised.value.code == "not_approved"
    assert raised.value.extra["status"] == "pending"


def test_a_claim_with_different_arguments_is_refused(bob, keys, pending):
    approval_decide(request_or_action_id=pending, actor_user=bob, approve=True)
    with pytest.raises(Conflict) as raised:
        approval_claim(
            request_or_action_id=pending,
            actor_key=keys["agent"].model,
            arguments={"amount": 5000, "customer": "cus_1"},
        )
    assert raised.value.code == "arguments_mismatch"


def test_an_approver_key_cannot_claim(bob, keys, pending):
    approval_decide(request_or_action_id=pending, actor_user=bob, approve=True)
    with pytest.raises(Forbidden):
        approval_claim(request_or_action_id=pending, actor_key=keys["approver"].model)


# --- races ----------------------------------------------------------------------------------


def test_an_expiry_working_from_a_stale_read_does_not_override_a_decision(bob, pending):
    stale = _overdue(ApprovalRequest.objects.get(pk=pending.pk))  # the sweep's view of the row
    ApprovalRequest.objects.filter(pk=pending.pk).update(
        expires_at=timezone.now() + timedelta(hours=1)
    )
    approval_decide(request_or_action_id=pending, actor_user=bob, approve=True)
    ApprovalRequest.objects.filter(pk=pending.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert approval_expire(request=stale) is False
    pending.refresh_from_db()
    assert pending.status == ApprovalRequest.Status.APPROVED


def test_a_reviewer_working_from_a_stale_read_gets_the_standing_outcome(alice, bob, pending):
    stale = ApprovalRequest.objects.get(pk=pending.pk)
    approval_decide(request_or_action_id=pending, actor_user=bob, approve=False)
    with pytest.raises(Conflict) as raised:
        approval_decide(request_or_action_id=stale, actor_user=alice, approve=True)
    assert raised.value.extra["status"] == "denied"


@pytest.mark.postgres  # SQLite (in-memory test DB) serialises writers and locks tables
@pytest.mark.django_db(transaction=True)
def test_racing_reviewers_end_with_exactly_one_outcome(org_a, agent_a):
    request = request_create(agent_a)
    reviewers = []
    for n in range(8):
        user = UserFactory(email=f"rev{n}@example.com")
        MembershipFactory(user=user, organization=org_a, role=Membership.Role.APPROVER)
        reviewers.append(user)
    barrier = threading.Barrier(len(reviewers))
    results: list[str] = []

    def decide(n: int) -> None:
        try:
            barrier.wait()
            approval_decide(
                request_or_action_id=request.action_id, actor_user=reviewers[n], approve=n % 2 == 0
            )
            results.append("ok")
        except Conflict as conflict:
            results.append(f"conflict:{conflict.extra['status']}")
        finally:
            connection.close()

    threads = [threading.Thread(target=decide, args=(n,)) for n in range(len(reviewers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    request.refresh_from_db()
    assert results.count("ok") == 1
    assert results.count(f"conflict:{request.status}") == len(reviewers) - 1
    assert (
        Event.objects.filter(
            action_id=request.action_id, event_type__in=["approval.approved", "approval.rejected"]
        ).count()
        == 1
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_decision_racing_the_expiry_sweep_ends_with_one_outcome(org_a, agent_a, bob):
    request = request_create(agent_a, timeout_seconds=1)
    ApprovalRequest.objects.filter(pk=request.pk).update(expires_at=timezone.now())
    barrier = threading.Barrier(2)
    outcome: dict[str, object] = {}

    def decide() -> None:
        barrier.wait()
        try:
            outcome["decide"] = approval_decide(
                request_or_action_id=request.action_id, actor_user=bob, approve=True
            ).status
        except Conflict as conflict:
            outcome["decide"] = f"conflict:{conflict.extra['status']}"
        finally:
            connection.close()

    def sweep() -> None:
        barrier.wait()
        try:
            outcome["sweep"] = approval_expire_overdue()
        finally:
            connection.close()

    threads = [threading.Thread(target=decide), threading.Thread(target=sweep)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    request.refresh_from_db()
    assert request.status == ApprovalRequest.Status.EXPIRED  # the deadline had passed
    assert outcome["decide"] == "conflict:expired"
    assert (
        Event.objects.filter(action_id=request.action_id, event_type="approval.expired").count()
        == 1
    )


def test_a_one_approver_decision_reads_the_request_twice_and_counts_no_votes(bob, pending):
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        decided = approval_decide(
            request_or_action_id=pending.action_id, actor_user=bob, approve=True
        )
    statements = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]
    request_reads = [s for s in statements if s.startswith('SELECT "approvals_approvalrequest"')]
    assert len(request_reads) == 2  # authorise, then lock: never reloaded after the UPDATE
    assert not [s for s in statements if "COUNT(*)" in s]
    turn = connection.vendor == "postgresql"  # the organisation's turn (approvals/turns.py)
    assert len(statements) <= 8 + turn, statements
    # The instance returned carries what the UPDATE wrote, and its event says the same.
    stored = ApprovalRequest.objects.get(pk=pending.pk)
    assert (
        decided.status,
        decided.decided_at,
        decided.decided_by_id,
        decided.decided_by_label,
    ) == (
        stored.status,
        stored.decided_at,
        stored.decided_by_id,
        stored.decided_by_label,
    )
    event = Event.objects.get(action_id=pending.action_id, event_type="approval.approved")
    assert event.data["status"] == "approved"
    entry = AuditEntry.objects.get(action_id=pending.action_id, kind=AuditEntry.Kind.DECISION)
    assert entry.data["approvals"] == 1
