from __future__ import annotations

from http import HTTPStatus

import pytest
from django.urls import reverse

from approvals.models import ApprovalRequest
from tests.factories import plan

pytestmark = pytest.mark.django_db


def _logged_in(client, user):
    client.force_login(user)
    return client


def test_the_queue_shows_the_pending_count_and_requests(client, bob, pending):
    response = _logged_in(client, bob).get(reverse("approvals:queue"))
    assert response.status_code == HTTPStatus.OK
    assert response.context["pending_count"] == 1
    assert pending.action_id in response.content.decode()
    assert b"vendor/htmx.min.js" in response.content
    assert b'hx-trigger="every 2s"' in response.content


def test_the_queue_fragment_picks_up_a_new_request(client, bob, make_request):
    _logged_in(client, bob)
    assert client.get(reverse("approvals:queue-fragment")).context["pending_count"] == 0
    new = make_request()
    response = client.get(reverse("approvals:queue-fragment"))
    assert response.context["pending_count"] == 1
    assert new.action_id in response.content.decode()


def test_an_outsider_sees_none_of_another_organisations_queue(client, charlie, org_c, pending):
    response = _logged_in(client, charlie).get(reverse("approvals:queue"))
    assert pending.action_id not in response.content.decode()
    assert response.context["pending_count"] == 0


def test_the_queue_needs_a_login(client, pending):
    response = client.get(reverse("approvals:queue"))
    assert response.status_code == HTTPStatus.FOUND


def test_the_detail_page_shows_the_call_and_the_decision_buttons(client, bob, pending):
    response = _logged_in(client, bob).get(reverse("approvals:detail", args=[pending.action_id]))
    page = response.content.decode()
    assert response.status_code == HTTPStatus.OK
    for text in (
        "stripe.refund",
        "refund-bot",
        "large refunds",
        "Refunds over 100",
        "cus_1",
        ">Approve</button>",
        ">Reject</button>",
        "data-expires",
    ):
        assert text in page
    assert ("amount", "500") in response.context["arguments"]


def test_a_viewer_sees_the_detail_page_without_buttons(client, vera, pending):
    response = _logged_in(client, vera).get(reverse("approvals:detail", args=[pending.action_id]))
    assert response.status_code == HTTPStatus.OK
    assert ">Approve</button>" not in response.content.decode()


def test_a_viewer_cannot_post_a_decision(client, vera, pending):
    response = _logged_in(client, vera).post(
        reverse("approvals:decide", args=[pending.action_id]), {"decision": "approve"}
    )
    assert response.status_code == HTTPStatus.FORBIDDEN
    pending.refresh_from_db()
    assert pending.status == "pending"


@pytest.mark.parametrize("name", ["approvals:detail", "approvals:detail-status"])
def test_an_outsider_gets_404_on_the_detail_pages(client, charlie, org_c, pending, name):
    response = _logged_in(client, charlie).get(reverse(name, args=[pending.action_id]))
    assert response.status_code == HTTPStatus.NOT_FOUND


def test_an_outsider_gets_404_posting_a_decision(client, charlie, org_c, pending):
    response = _logged_in(client, charlie).post(
        reverse("approvals:decide", args=[pending.action_id]), {"decision": "approve"}
    )
    assert response.status_code == HTTPStatus.NOT_FOUND
    pending.refresh_from_db()
    assert pending.status == "pending"


@pytest.mark.parametrize(("decision", "status"), [("approve", "approved"), ("reject", "denied")])
def test_a_reviewer_decides_from_the_detail_page(client, bob, pending, decision, status):
    response = _logged_in(client, bob).post(
        reverse("approvals:decide", args=[pending.action_id]),
        {"decision": decision, "notes": "from the page"},
    )
    assert response.status_code == HTTPStatus.FOUND
    pending.refresh_from_db()
    assert pending.status == status
    assert pending.notes == "from the page"


def test_deciding_a_decided_request_from_the_page_shows_the_standing_outcome(
    client, alice, bob, pending
):
    _logged_in(client, bob).post(
        reverse("approvals:decide", args=[pending.action_id]), {"decision": "reject"}
    )
    response = _logged_in(client, alice).post(
        reverse("approvals:decide", args=[pending.action_id]),
        {"decision": "approve"},
        follow=True,
    )
    assert "already denied" in response.content.decode()
    pending.refresh_from_db()
    assert pending.status == "denied"


def test_the_detail_page_shows_who_approved_so_far_under_quorum(
    client, org_a, alice, bob, make_request
):
    org_a.plan = plan("business")
    org_a.save()
    request = make_request(approvals_required=2)
    _logged_in(client, bob).post(
        reverse("approvals:decide", args=[request.action_id]), {"decision": "approve"}
    )
    response = _logged_in(client, alice).get(reverse("approvals:detail", args=[request.action_id]))
    page = response.content.decode()
    assert "1 of 2" in page
    assert "bob@example.com" in page


def test_the_history_filters_by_status(client, bob, make_request):
    approved = make_request()
    waiting = make_request()
    _logged_in(client, bob).post(
        reverse("approvals:decide", args=[approved.action_id]), {"decision": "approve"}
    )
    response = client.get(reverse("approvals:history"), {"status": "approved"})
    listed = [item.action_id for item in response.context["page"]]
    assert listed == [approved.action_id]
    assert waiting.action_id not in listed


def test_the_history_filters_by_agent_environment_and_dates(client, bob, org_a, make_request):
    from agents.models import Agent

    other = Agent.objects.create(organization=org_a, name="ops-bot")
    mine = make_request(environment="live")
    make_request(environment="test")
    make_request(agent=other, environment="live")
    today = mine.requested_at.date().isoformat()
    response = _logged_in(client, bob).get(
        reverse("approvals:history"),
        {"agent": "refund-bot", "environment": "live", "since": today, "until": today},
    )
    assert [item.action_id for item in response.context["page"]] == [mine.action_id]


def test_the_history_of_an_outsider_does_not_list_other_organisations(
    client, charlie, org_c, pending
):
    response = _logged_in(client, charlie).get(reverse("approvals:history"))
    assert pending.action_id not in response.content.decode()


def test_the_pages_are_built_for_phone_widths(client, bob, pending):
    response = _logged_in(client, bob).get(reverse("approvals:detail", args=[pending.action_id]))
    page = response.content.decode()
    assert 'name="viewport" content="width=device-width' in page
    assert "table-wrap" in page


def test_an_overdue_request_reads_expired_on_its_page(client, bob, pending):
    from datetime import timedelta

    from django.utils import timezone

    ApprovalRequest.objects.filter(pk=pending.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    response = _logged_in(client, bob).get(reverse("approvals:detail", args=[pending.action_id]))
    assert response.context["approval"].status == "expired"
    assert ">Approve</button>" not in response.content.decode()
