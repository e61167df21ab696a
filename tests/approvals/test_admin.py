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


@pytest.fixture
def superuser_charlie(charlie):
    """A superuser who is not a member of Acme (he owns Charlie Co)."""
    charlie.is_staff = True
    charlie.is_superuser = True
    charlie.save()
    return charlie


def test_a_superuser_outside_the_organisation_sees_its_requests_in_the_admin(
    client, superuser_charlie, pending
):
    client.force_login(superuser_charlie)
    assert client.get(CHANGELIST).context["cl"].result_count == 1


@pytest.mark.parametrize(
    ("action", "verb"), [("approve_selected", "approved"), ("deny_selected", "denied")]
)
def test_a_superuser_outside_the_organisation_is_told_why_he_cannot_decide(
    client, superuser_charlie, pending, action, verb
):
    client.force_login(superuser_charlie)
    response = client.post(
        CHANGELIST,
        {"action": action, ACTION_CHECKBOX_NAME: [pending.pk], "confirm": "yes"},
        follow=True,
    )
    page = response.content.decode()
    assert (
        f"Request {pending.action_id} not {verb}: you are not a member of Acme; only its "
        "owners, admins and approvers can decide its requests"
    ) in page
    assert "No such approval request" not in page
    assert pending.action_id.capitalize() not in page
    pending.refresh_from_db()
    assert pending.status == "pending"
    assert not pending.check_entry.organization.audit_entries.filter(kind="decision").exists()


def test_a_staff_viewer_is_told_that_his_role_cannot_decide(client, vera, pending):
    vera.is_staff = True
    vera.is_superuser = True
    vera.save()
    client.force_login(vera)
    response = client.post(
        CHANGELIST,
        {"action": "deny_selected", ACTION_CHECKBOX_NAME: [pending.pk], "confirm": "yes"},
        follow=True,
    )
    assert "your role in Acme (viewer) cannot decide approval requests" in (
        response.content.decode()
    )
    pending.refresh_from_db()
    assert pending.status == "pending"


def test_the_admin_says_denied_requests_were_denied(client, staff_bob, pending):
    client.force_login(staff_bob)
    response = client.post(
        CHANGELIST,
        {"action": "deny_selected", ACTION_CHECKBOX_NAME: [pending.pk], "confirm": "yes"},
        follow=True,
    )
    assert "1 request(s) denied." in response.content.decode()
