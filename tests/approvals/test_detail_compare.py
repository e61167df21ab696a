"""The approval page: neighbours for j/k, the calls to compare with, and the decision form
that gives way to "decided by ..." when someone else (or the clock) decides."""

from __future__ import annotations

from datetime import timedelta
from http import HTTPStatus

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from agents.models import Agent
from approvals.models import ApprovalRequest
from approvals.selectors import (
    agent_recent_calls,
    approval_pending_neighbours,
    approval_similar_decisions,
)
from approvals.services import approval_decide, approval_expire_overdue
from tests.approvals.conftest import request_create

pytestmark = pytest.mark.django_db


def _detail(client, user, request):
    client.force_login(user)
    return client.get(reverse("approvals:detail", args=[request.action_id]))


def _status(client, request):
    return client.get(reverse("approvals:detail-status", args=[request.action_id]))


def test_the_neighbours_follow_the_queue_order_oldest_first(org_a, make_request):
    first, second, third = make_request(), make_request(), make_request()
    assert approval_pending_neighbours(organization=org_a, approval=second) == (
        first.action_id,
        third.action_id,
    )
    assert approval_pending_neighbours(organization=org_a, approval=first) == (
        None,
        second.action_id,
    )


def test_the_neighbours_skip_decided_requests_and_other_organisations(
    org_a, alice, make_request, agent_c
):
    first, second, third = make_request(), make_request(), make_request()
    request_create(agent_c)
    approval_decide(request_or_action_id=second, actor_user=alice, approve=True)
    assert approval_pending_neighbours(organization=org_a, approval=first) == (
        None,
        third.action_id,
    )


def test_recent_calls_are_the_agents_checks_of_the_same_action_newest_first(
    org_a, agent_a, make_request
):
    older = make_request(arguments={"amount": 10})
    make_request(action="email.send")
    make_request(agent=Agent.objects.create(organization=org_a, name="other"))
    newer = make_request(arguments={"amount": 20})
    current = make_request()
    calls = agent_recent_calls(approval=current)
    assert [c.public_id for c in calls] == [newer.action_id, older.action_id]
    assert agent_recent_calls(approval=current, limit=1)[0].public_id == newer.action_id


def test_similar_decisions_are_the_last_decided_calls_of_the_agent_and_action(
    org_a, alice, make_request
):
    approved = make_request(arguments={"amount": 90})
    denied = make_request(arguments={"amount": 900})
    make_request(action="email.send")
    still_pending = make_request()
    approval_decide(request_or_action_id=approved, actor_user=alice, approve=True)
    approval_decide(request_or_action_id=denied, actor_user=alice, approve=False, notes="too much")
    similar = approval_similar_decisions(approval=still_pending)
    assert [(r.action_id, r.status) for r in similar] == [
        (denied.action_id, "denied"),
        (approved.action_id, "approved"),
    ]


def test_the_detail_page_shows_comparisons_shortcuts_and_neighbours(
    client, alice, bob, make_request
):
    earlier = make_request(arguments={"amount": 77, "customer": "cus_old"})
    approval_decide(request_or_action_id=earlier, actor_user=alice, approve=False, notes="no")
    current = make_request()
    following = make_request()
    response = _detail(client, bob, current)
    page = response.content.decode()
    assert response.status_code == HTTPStatus.OK
    assert 'id="recent-calls"' in page and "customer=cus_old" in page
    assert 'id="similar-decisions"' in page and "alice@example.com" in page
    assert f'href="/approvals/{following.action_id}/" id="next-pending"' in page
    assert 'id="prev-pending"' not in page
    assert "<kbd>a</kbd> approve" in page and "approvals/shortcuts.js" in page
    assert "Amount <strong>500</strong>" in page


def test_a_viewer_sees_no_approve_shortcut_hint(client, vera, pending):
    page = _detail(client, vera, pending).content.decode()
    assert "<kbd>a</kbd>" not in page and "<kbd>j</kbd> next" in page


def test_the_status_fragment_leaves_the_form_alone_while_pending(client, bob, pending):
    client.force_login(bob)
    fragment = _status(client, pending).content.decode()
    assert "hx-swap-oob" not in fragment


def test_once_decided_elsewhere_the_fragment_replaces_the_buttons_naming_the_decider(
    client, alice, bob, pending
):
    client.force_login(bob)
    approval_decide(request_or_action_id=pending, actor_user=alice, approve=True, notes="fine")
    fragment = _status(client, pending).content.decode()
    assert 'id="decide" role="status" hx-swap-oob="true"' in fragment
    assert "<strong>Approved</strong> by alice@example.com at " in fragment
    assert ">Approve</button>" not in fragment


def test_an_expired_request_says_it_expired_instead_of_offering_buttons(client, bob, pending):
    ApprovalRequest.objects.filter(pk=pending.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    approval_expire_overdue()
    client.force_login(bob)
    assert "<strong>Expired</strong>: no one decided" in _status(client, pending).content.decode()
    page = _detail(client, bob, pending).content.decode()
    assert "<strong>Expired</strong>" in page and ">Approve</button>" not in page


def test_the_page_of_a_decided_request_names_the_decider_and_has_no_buttons(
    client, alice, bob, pending
):
    approval_decide(request_or_action_id=pending, actor_user=alice, approve=False)
    page = _detail(client, bob, pending).content.decode()
    assert "<strong>Denied</strong> by alice@example.com" in page
    assert ">Approve</button>" not in page and ">Reject</button>" not in page


def test_posting_on_a_request_decided_meanwhile_is_refused_with_the_standing_outcome(
    client, alice, bob, pending
):
    approval_decide(request_or_action_id=pending, actor_user=alice, approve=True)
    client.force_login(bob)
    response = client.post(
        reverse("approvals:decide", args=[pending.action_id]), {"decision": "reject"}
    )
    assert response.status_code == HTTPStatus.FOUND
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "This approval request is already approved; the decision stands."
    ]
    pending.refresh_from_db()
    assert pending.status == "approved" and pending.votes.count() == 1


def test_the_detail_page_reads_the_same_number_of_queries_however_much_history(
    client, alice, bob, make_request
):
    def queries_for_detail() -> int:
        current = make_request()
        client.force_login(bob)
        with CaptureQueriesContext(connection) as captured:
            assert _detail(client, bob, current).status_code == HTTPStatus.OK
        return len(captured)

    few = queries_for_detail()
    for _ in range(6):
        approval_decide(request_or_action_id=make_request(), actor_user=alice, approve=True)
    assert queries_for_detail() == few
