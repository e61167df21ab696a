"""The review queue: what each item shows, its order and filters, the bulk decision, and the
pending count (selectors and services directly; the pages through the client)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from http import HTTPStatus

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from agents.models import Agent
from approvals.models import ApprovalRequest
from approvals.selectors import (
    QueueFilters,
    approval_pending_count,
    approval_queue,
    argument_amount,
    arguments_brief,
)
from approvals.services import approval_decide, approval_decide_bulk
from audit.models import AuditEntry
from tests.approvals.conftest import request_create
from tests.factories import plan

pytestmark = pytest.mark.django_db


def _ids(queryset) -> list[str]:
    return [r.action_id for r in queryset]


def _queue(organization, **filters) -> list[str]:
    return _ids(approval_queue(organization=organization, filters=QueueFilters(**filters)))


@pytest.fixture
def refunds(make_request) -> dict[str, ApprovalRequest]:
    """Four pending refunds, oldest first: 50, 420, "420" (a string) and no amount."""
    return {
        "fifty": make_request(arguments={"amount": 50, "customer": "cus_1"}),
        "four_twenty": make_request(arguments={"amount": 420, "customer": "cus_2"}),
        "text": make_request(arguments={"amount": "420", "customer": "cus_3"}),
        "missing": make_request(arguments={"customer": "cus_4"}),
    }


# --- what an item shows ----------------------------------------------------------------------


def test_an_amount_of_420_and_a_missing_amount_read_differently():
    assert argument_amount({"amount": 420}).text == "420"
    missing = argument_amount({"customer": "cus_1"})
    assert missing.missing and missing.text == "amount missing"
    assert argument_amount({"amount": "420"}).not_a_number
    assert argument_amount({"amount": True}).not_a_number
    assert argument_amount({"amount": 1250.5}).text == "1,250.50"


def test_the_brief_lists_the_first_fields_other_than_the_amount_cut_to_a_width():
    brief = arguments_brief(
        {"amount": 5, "customer": "cus_1", "memo": "x" * 100, "a": 1, "b": 2, "c": 3}
    )
    assert brief.startswith("customer=cus_1, memo=" + "x" * 31 + "…, a=1")
    assert "amount" not in brief
    assert brief.endswith("(+2 more)")


# --- order and filters ------------------------------------------------------------------------


def test_the_queue_is_oldest_first_by_default_and_newest_first_on_request(org_a, refunds):
    oldest_first = [r.action_id for r in refunds.values()]
    assert _queue(org_a) == oldest_first
    assert _queue(org_a, newest_first=True) == oldest_first[::-1]


def test_the_queue_holds_only_pending_requests_of_the_organisation(org_a, alice, refunds, agent_c):
    other = request_create(agent_c)
    approval_decide(request_or_action_id=refunds["fifty"], actor_user=alice, approve=True)
    queue = _queue(org_a)
    assert refunds["fifty"].action_id not in queue
    assert other.action_id not in queue
    assert len(queue) == 3


def test_an_overdue_request_leaves_the_queue_as_expired(org_a, refunds):
    ApprovalRequest.objects.filter(pk=refunds["fifty"].pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert refunds["fifty"].action_id not in _queue(org_a)
    refunds["fifty"].refresh_from_db()
    assert refunds["fifty"].status == "expired"


def test_the_amount_range_keeps_only_numeric_amounts_inside_it(org_a, refunds):
    assert _queue(org_a, amount_min=Decimal(100), amount_max=Decimal(500)) == [
        refunds["four_twenty"].action_id
    ]
    assert _queue(org_a, amount_max=Decimal(500)) == [
        refunds["fifty"].action_id,
        refunds["four_twenty"].action_id,
    ]
    assert _queue(org_a, amount_min=Decimal("420.5")) == []
    assert _queue(org_a, amount_min=Decimal(420)) == [refunds["four_twenty"].action_id]


def test_a_huge_or_odd_amount_does_not_break_the_range(org_a, make_request):
    huge = make_request(arguments={"amount": 10**40})
    make_request(arguments={"amount": None})
    make_request(arguments={"amount": {"value": 5}})
    make_request(arguments=[1, 2])  # not even an object
    assert _queue(org_a, amount_min=Decimal(10**39)) == [huge.action_id]


def test_the_queue_filters_by_agent_action_and_environment(org_a, agent_a, make_request):
    other_agent = Agent.objects.create(organization=org_a, name="mail-bot")
    refund = make_request()
    mail = make_request(agent=other_agent, action="email.send")
    live = make_request(environment="live")
    assert _queue(org_a, agent=other_agent.public_id) == [mail.action_id]
    assert _queue(org_a, action="STRIPE.refund") == [refund.action_id, live.action_id]
    assert _queue(org_a, environment="live") == [live.action_id]
    assert _queue(org_a, agent=agent_a.public_id, environment="test") == [refund.action_id]


def test_the_pending_count_is_one_query(org_a, refunds, django_assert_num_queries):
    with django_assert_num_queries(1):
        assert approval_pending_count(organization=org_a) == 4


# --- the bulk decision ------------------------------------------------------------------------


def test_a_bulk_approval_decides_each_request_with_the_note_and_an_audit_entry(org_a, bob, refunds):
    chosen = [refunds["fifty"].action_id, refunds["missing"].action_id]
    outcomes = approval_decide_bulk(
        organization=org_a, action_ids=chosen, actor_user=bob, approve=True, notes="batch ok"
    )
    assert [(o.action_id, o.result, o.status) for o in outcomes] == [
        (chosen[0], "decided", "approved"),
        (chosen[1], "decided", "approved"),
    ]
    for action_id in chosen:
        request = ApprovalRequest.objects.get(action_id=action_id)
        assert (request.status, request.notes, request.decided_by) == ("approved", "batch ok", bob)
        entry = AuditEntry.objects.get(kind="decision", action_id=action_id)
        assert entry.actor_user == bob and entry.data["notes"] == "batch ok"
    assert ApprovalRequest.objects.get(pk=refunds["text"].pk).status == "pending"


def test_a_request_decided_meanwhile_is_reported_and_its_decision_stands(
    org_a, alice, bob, refunds
):
    approval_decide(request_or_action_id=refunds["fifty"], actor_user=alice, approve=True)
    outcomes = approval_decide_bulk(
        organization=org_a,
        action_ids=[refunds["fifty"].action_id, refunds["text"].action_id],
        actor_user=bob,
        approve=False,
    )
    assert [(o.result, o.status) for o in outcomes] == [
        ("already_decided", "approved"),
        ("decided", "denied"),
    ]
    refunds["fifty"].refresh_from_db()
    assert refunds["fifty"].status == "approved" and refunds["fifty"].decided_by == alice


def test_a_viewer_bulk_decision_is_not_allowed_and_changes_nothing(org_a, vera, refunds):
    outcomes = approval_decide_bulk(
        organization=org_a,
        action_ids=[r.action_id for r in refunds.values()],
        actor_user=vera,
        approve=True,
    )
    assert {o.result for o in outcomes} == {"not_allowed"}
    assert ApprovalRequest.objects.filter(status="pending").count() == 4
    assert not AuditEntry.objects.filter(kind="decision").exists()


def test_another_organisations_ids_are_not_found_and_untouched(org_a, org_c, charlie, pending):
    outcomes = approval_decide_bulk(
        organization=org_c, action_ids=[pending.action_id], actor_user=charlie, approve=True
    )
    assert [(o.result, o.detail) for o in outcomes] == [("not_found", "No such approval request.")]
    pending.refresh_from_db()
    assert pending.status == "pending" and not pending.votes.exists()


def test_a_quorum_request_in_a_bulk_approval_records_one_vote(org_a, bob, make_request):
    org_a.plan = plan("business")
    org_a.save()
    quorum = make_request(approvals_required=2)
    (outcome,) = approval_decide_bulk(
        organization=org_a, action_ids=[quorum.action_id], actor_user=bob, approve=True
    )
    assert (outcome.result, outcome.status) == ("decided", "pending")
    (again,) = approval_decide_bulk(
        organization=org_a, action_ids=[quorum.action_id], actor_user=bob, approve=True
    )
    assert again.result == "already_voted"
    assert quorum.votes.count() == 1


def test_quorum_approval_below_business_is_not_allowed_in_bulk(org_a, bob, make_request):
    quorum = make_request(approvals_required=2)  # Acme is on Pro
    (outcome,) = approval_decide_bulk(
        organization=org_a, action_ids=[quorum.action_id], actor_user=bob, approve=True
    )
    assert outcome.result == "not_allowed" and "Business" in outcome.detail


# --- the pages --------------------------------------------------------------------------------


def _page(client, user, **params):
    client.force_login(user)
    return client.get(reverse("approvals:queue"), params)


def test_the_queue_page_shows_amount_arguments_rule_reason_and_environment(client, bob, refunds):
    page = _page(client, bob).content.decode()
    assert "amount 420<" in page
    assert "amount missing" in page
    assert "amount 420 (not a number)" in page
    assert "customer=cus_2" in page
    assert "large refunds" in page and "Refunds over 100 need a human" in page
    assert page.index(refunds["fifty"].action_id) < page.index(refunds["missing"].action_id)


def test_the_page_title_carries_the_pending_count(client, bob, refunds):
    page = _page(client, bob).content.decode()
    assert "<title>(4) Approvals · Warden</title>" in page


def test_the_queue_page_filters_from_the_query_string(client, bob, refunds):
    response = _page(client, bob, amount_min="100", amount_max="500", order="newest")
    assert response.status_code == HTTPStatus.OK
    assert [i["request"].action_id for i in response.context["items"]] == [
        refunds["four_twenty"].action_id
    ]
    fragment = client.get(reverse("approvals:queue-fragment"), {"amount_max": "60"})
    assert [i["request"].action_id for i in fragment.context["items"]] == [
        refunds["fifty"].action_id
    ]
    assert 'hx-get="/approvals/queue.fragment?amount_min=100&amp;amount_max=500' in (
        response.content.decode()
    )


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"amount_min": "lots"}, "amount_min"),
        ({"amount_min": "NaN"}, "amount_min"),
        ({"amount_min": "500", "amount_max": "100"}, "amount_max"),
        ({"agent": "agt_not_ours"}, "agent"),
        ({"environment": "prod"}, "environment"),
    ],
)
def test_a_bad_filter_is_a_form_error_not_a_server_error(client, bob, refunds, params, field):
    response = _page(client, bob, **params)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert field in response.context["form"].errors
    assert response.context["items"] == []
    assert 'class="errorlist filter-errors"' in response.content.decode()


def test_another_organisations_agent_is_not_a_filter_choice(client, bob, refunds, agent_c):
    response = _page(client, bob, agent=agent_c.public_id)
    assert response.status_code == HTTPStatus.BAD_REQUEST


def _bulk(client, user, ids, decision="approve", notes="", next_query=""):
    client.force_login(user)
    return client.post(
        reverse("approvals:queue-decide"),
        {"action_ids": ids, "decision": decision, "notes": notes, "next_query": next_query},
    )


def test_a_bulk_post_decides_and_reports_each_request(client, alice, bob, refunds):
    approval_decide(request_or_action_id=refunds["text"], actor_user=alice, approve=False)
    ids = [refunds["fifty"].action_id, refunds["text"].action_id]
    response = _bulk(client, bob, ids, notes="checked", next_query="order=newest")
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == "/approvals/?order=newest"
    texts = [str(m) for m in get_messages(response.wsgi_request)]
    assert texts == [
        f"stripe.refund ({ids[0]}): approved.",
        f"stripe.refund ({ids[1]}): already denied; the decision stands.",
    ]
    refunds["fifty"].refresh_from_db()
    assert (refunds["fifty"].status, refunds["fifty"].notes) == ("approved", "checked")


def test_a_bulk_post_naming_another_organisations_ids_does_not_touch_them(
    client, charlie, org_c, pending
):
    response = _bulk(client, charlie, [pending.action_id])
    assert response.status_code == HTTPStatus.FOUND
    texts = [str(m) for m in get_messages(response.wsgi_request)]
    assert texts == [f"{pending.action_id}: no such request in this organisation."]
    pending.refresh_from_db()
    assert pending.status == "pending" and not pending.votes.exists()


def test_a_viewer_bulk_post_changes_nothing(client, vera, refunds):
    response = _bulk(client, vera, [refunds["fifty"].action_id])
    texts = [str(m) for m in get_messages(response.wsgi_request)]
    assert texts[0].endswith("Viewers can see approval requests but not decide them.")
    assert ApprovalRequest.objects.filter(status="pending").count() == 4


def test_a_bulk_post_without_a_selection_says_so(client, bob, refunds):
    response = _bulk(client, bob, [])
    assert [str(m) for m in get_messages(response.wsgi_request)] == ["Select at least one request."]
    assert ApprovalRequest.objects.filter(status="pending").count() == 4


def test_a_bulk_post_never_redirects_off_site(client, bob, refunds):
    response = _bulk(client, bob, [refunds["fifty"].action_id], next_query="//evil.example/x")
    assert response["Location"].startswith("/approvals/?")


def test_a_viewer_gets_no_checkboxes_or_bulk_buttons(client, vera, refunds):
    page = _page(client, vera).content.decode()
    assert "queue-select" not in page and "Approve selected" not in page
    assert "amount 420<" in page


def test_the_pending_count_endpoint_counts_only_the_organisation(
    client, bob, charlie, org_c, refunds
):
    client.force_login(bob)
    assert client.get(reverse("approvals:pending-count")).json() == {"pending_count": 4}
    client.force_login(charlie)
    assert client.get(reverse("approvals:pending-count")).json() == {"pending_count": 0}


def test_the_pending_count_needs_a_login(client, refunds):
    assert client.get(reverse("approvals:pending-count")).status_code == HTTPStatus.FOUND


def test_every_page_shows_the_pending_count_in_the_navigation(client, bob, refunds):
    client.force_login(bob)
    page = client.get(reverse("agents:list")).content.decode()
    assert 'id="nav-pending-count" data-count="4"' in page
    assert "approvals/pending.js" in page
