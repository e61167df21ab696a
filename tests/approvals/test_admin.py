from __future__ import annotations

from http import HTTPStatus

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/approvals/approvalrequest/"


@pytest.fixture
def staff_bob(bob):
    bob.is_staff = True
    bob.is_superuser = True
    bob.save()
    return bob


@pytest.mark.parametrize(
    ("query", "count"),
    [
        ("?status__exact=pending", 1),
        ("?status__exact=approved", 0),
        ("?environment=test", 1),
        ("?environment=live", 0),
        ("?age=lt5m", 1),
        ("?age=gt1d", 0),
    ],
)
def test_the_admin_queue_filters_by_status_environment_and_age(
    client, staff_bob, pending, query, count
):
    client.force_login(staff_bob)
    response = client.get(CHANGELIST + query)
    assert response.status_code == HTTPStatus.OK
    assert response.context["cl"].result_count == count


def test_the_admin_age_filter_finds_old_requests(client, staff_bob, pending):
    from datetime import timedelta

    from approvals.models import ApprovalRequest

    ApprovalRequest.objects.filter(pk=pending.pk).update(
        requested_at=pending.requested_at - timedelta(days=2)
    )
    client.force_login(staff_bob)
    assert client.get(CHANGELIST + "?age=gt1d").context["cl"].result_count == 1


def test_the_admin_search_finds_a_request_by_action_id(client, staff_bob, pending, make_request):
    client.force_login(staff_bob)
    other = make_request(action="db.delete")
    page = client.get(CHANGELIST, {"q": pending.action_id}).content.decode()
    assert "stripe.refund" in page
    assert other.action_id not in page


def test_the_admin_detail_shows_the_arguments_as_a_table(client, staff_bob, pending):
    client.force_login(staff_bob)
    page = client.get(f"{CHANGELIST}{pending.pk}/change/").content.decode()
    assert "approval-arguments" in page
    assert "<th scope='row'>amount</th><td>500</td>" in page or (
        '<th scope="row">amount</th><td>500</td>' in page
    )


def test_the_admin_approve_action_asks_for_notes_first(client, staff_bob, pending):
    client.force_login(staff_bob)
    response = client.post(
        CHANGELIST, {"action": "approve_selected", ACTION_CHECKBOX_NAME: [pending.pk]}
    )
    assert response.status_code == HTTPStatus.OK
    assert b'name="notes"' in response.content
    pending.refresh_from_db()
    assert pending.status == "pending"


@pytest.mark.parametrize(
    ("action", "status"), [("approve_selected", "approved"), ("deny_selected", "denied")]
)
def test_the_admin_actions_decide_through_the_service_with_notes(
    client, staff_bob, pending, action, status
):
    client.force_login(staff_bob)
    client.post(
        CHANGELIST,
        {
            "action": action,
            ACTION_CHECKBOX_NAME: [pending.pk],
            "confirm": "yes",
            "notes": "via admin",
        },
    )
    pending.refresh_from_db()
    assert pending.status == status
    assert pending.notes == "via admin"
    assert pending.decided_by == staff_bob
    assert pending.check_entry.organization.audit_entries.filter(
        kind="decision", source="admin"
    ).exists()


def test_a_staff_user_outside_the_organisation_cannot_decide_in_the_admin(client, charlie, pending):
    charlie.is_staff = True
    charlie.is_superuser = True
    charlie.save()
    client.force_login(charlie)
    response = client.post(
        CHANGELIST,
        {"action": "approve_selected", ACTION_CHECKBOX_NAME: [pending.pk], "confirm": "yes"},
        follow=True,
    )
    assert "No such approval request" in response.content.decode()
    pending.refresh_from_db()
    assert pending.status == "pending"
