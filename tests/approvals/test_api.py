from __future__ import annotations

from http import HTTPStatus

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from approvals.models import ApprovalRequest
from audit.models import AuditEntry
from tests.approvals.conftest import key_create, request_create
from tests.factories import plan

pytestmark = pytest.mark.django_db


def _approve_url(action_id: str, verb: str = "approve") -> str:
    return f"/api/v1/actions/{action_id}/{verb}"


# --- native approve / deny ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("persona", "status"),
    [
        ("alice", HTTPStatus.OK),
        ("bob", HTTPStatus.OK),
        ("vera", HTTPStatus.FORBIDDEN),
        ("charlie", HTTPStatus.NOT_FOUND),
    ],
)
def test_members_approve_through_the_api_according_to_their_role(
    request, member_client, org_c, pending, persona, status
):
    user = request.getfixturevalue(persona)
    response = member_client(user).post(
        _approve_url(pending.action_id), {"notes": "ok"}, format="json"
    )
    assert response.status_code == status
    pending.refresh_from_db()
    assert (pending.status == "approved") == (status == HTTPStatus.OK)


@pytest.mark.parametrize(
    ("kind", "status"),
    [("approver", HTTPStatus.OK), ("agent", HTTPStatus.FORBIDDEN), ("org", HTTPStatus.FORBIDDEN)],
)
def test_keys_deny_through_the_api_only_when_they_are_approver_keys(
    key_client, keys, pending, kind, status
):
    response = key_client(keys[kind]).post(
        _approve_url(pending.action_id, "deny"), {}, format="json"
    )
    assert response.status_code == status
    if status == HTTPStatus.FORBIDDEN:
        assert response.json()["code"] == "forbidden"


def test_approving_answers_the_action_json(key_client, keys, pending):
    response = key_client(keys["approver"]).post(
        _approve_url(pending.action_id), {"notes": "fine"}, format="json"
    )
    body = response.json()
    assert body["action_id"] == pending.action_id
    assert body["status"] == "approved"
    assert body["notes"] == "fine"
    assert body["approvals"][0]["notes"] == "fine"


def test_an_approver_key_of_another_organisation_gets_404(key_client, org_c, pending):
    response = key_client(key_create(org_c, "approver")).post(
        _approve_url(pending.action_id), {}, format="json"
    )
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response.json()["code"] == "not_found"


def test_deciding_twice_answers_409_with_the_standing_status(key_client, keys, pending):
    client = key_client(keys["approver"])
    client.post(_approve_url(pending.action_id, "deny"), {}, format="json")
    response = client.post(_approve_url(pending.action_id), {}, format="json")
    assert response.status_code == HTTPStatus.CONFLICT
    assert response.json()["status"] == "denied"
    assert response.json()["code"] == "conflict"


def test_a_session_decision_without_csrf_is_refused(client, bob, pending):
    from rest_framework.test import APIClient

    api = APIClient(enforce_csrf_checks=True)
    api.force_login(bob)
    response = api.post(_approve_url(pending.action_id), {}, format="json")
    assert response.status_code == HTTPStatus.FORBIDDEN
    pending.refresh_from_db()
    assert pending.status == "pending"


def test_an_anonymous_caller_gets_401(pending):
    from rest_framework.test import APIClient

    response = APIClient().post(_approve_url(pending.action_id), {}, format="json")
    assert response.status_code == HTTPStatus.UNAUTHORIZED


def test_notes_that_are_not_text_are_a_clear_400(key_client, keys, pending):
    response = key_client(keys["approver"]).post(
        _approve_url(pending.action_id), {"notes": {"a": 1}}, format="json"
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == "notes"


def test_quorum_approval_below_business_answers_the_plan_message(key_client, keys, make_request):
    request = make_request(approvals_required=2)
    response = key_client(keys["approver"]).post(_approve_url(request.action_id), {}, format="json")
    assert response.status_code == HTTPStatus.PAYMENT_REQUIRED
    assert response.json()["code"] == "plan_required"
    assert "Business" in response.json()["detail"]


def test_a_quorum_approval_answers_pending_with_the_approvals_so_far(
    org_a, member_client, bob, make_request
):
    org_a.plan = plan("business")
    org_a.save()
    request = make_request(approvals_required=2)
    body = member_client(bob).post(_approve_url(request.action_id), {}, format="json").json()
    assert body["status"] == "pending"
    assert [a["by"] for a in body["approvals"]] == ["bob@example.com"]
    assert body["approvals_required"] == 2


# --- the queue ------------------------------------------------------------------------------


def test_the_queue_lists_pending_requests_with_their_action_id(member_client, bob, make_request):
    waiting = make_request()
    decided = make_request()
    member_client(bob).post(_approve_url(decided.action_id), {}, format="json")
    body = member_client(bob).get("/api/v1/approvals?status=pending").json()
    assert body["count"] == 1
    assert [item["action_id"] for item in body["results"]] == [waiting.action_id]
    assert body["results"][0]["arguments"] == {"amount": 500, "customer": "cus_1"}


def test_the_queue_filters_by_agent_and_environment(key_client, keys, org_a, agent_a):
    from agents.models import Agent

    other = Agent.objects.create(organization=org_a, name="ops-bot")
    mine = request_create(agent_a, environment="live")
    request_create(agent_a, environment="test")
    request_create(other, environment="live")
    client = key_client(keys["approver"])
    body = client.get("/api/v1/approvals?status=pending&agent=refund-bot&environment=live").json()
    assert [item["action_id"] for item in body["results"]] == [mine.action_id]


def test_the_queue_of_another_organisation_is_invisible(key_client, org_c, pending):
    body = key_client(key_create(org_c, "approver")).get("/api/v1/approvals").json()
    assert body == {"results": [], "count": 0}


def test_the_queue_of_an_outsider_member_is_empty(member_client, charlie, org_c, pending):
    assert member_client(charlie).get("/api/v1/approvals").json()["count"] == 0


def test_agent_keys_cannot_list_the_queue(key_client, keys, pending):
    assert key_client(keys["agent"]).get("/api/v1/approvals").status_code == HTTPStatus.FORBIDDEN


def test_an_unknown_status_filter_is_a_400(key_client, keys):
    response = key_client(keys["approver"]).get("/api/v1/approvals?status=maybe")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == "status"


def test_an_overdue_request_lists_as_expired(key_client, keys, pending):
    from datetime import timedelta

    from django.utils import timezone

    ApprovalRequest.objects.filter(pk=pending.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    body = key_client(keys["approver"]).get("/api/v1/approvals").json()
    assert body["results"][0]["status"] == "expired"


def test_approving_an_overdue_request_is_409_and_it_stays_expired(key_client, keys, pending):
    """The decision settles the overdue request (expired, with its audit entry) before it
    refuses; the request's transaction keeps that settlement (approvals/turns.py)."""
    from datetime import timedelta

    from django.utils import timezone

    ApprovalRequest.objects.filter(pk=pending.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    response = key_client(keys["approver"]).post(_approve_url(pending.action_id), {}, "json")
    assert response.status_code == HTTPStatus.CONFLICT, response.content
    assert response.json()["status"] == "expired"
    pending.refresh_from_db()
    assert pending.status == ApprovalRequest.Status.EXPIRED
    assert AuditEntry.objects.filter(action_id=pending.action_id, decision="expire").exists()


# --- claim and cancel -----------------------------------------------------------------------


def test_the_first_claim_succeeds_and_the_second_is_409_already_claimed(
    key_client, keys, bob, member_client, pending
):
    member_client(bob).post(_approve_url(pending.action_id), {}, format="json")
    client = key_client(keys["agent"])
    first = client.post(_approve_url(pending.action_id, "claim"), {}, format="json")
    second = client.post(_approve_url(pending.action_id, "claim"), {}, format="json")
    assert first.status_code == HTTPStatus.OK
    assert first.json()["status"] == "approved"
    assert first.json()["claimed_at"]
    assert second.status_code == HTTPStatus.CONFLICT
    assert second.json()["code"] == "already_claimed"


def test_claiming_a_pending_action_is_409_not_approved(key_client, keys, pending):
    response = key_client(keys["org"]).post(_approve_url(pending.action_id, "claim"))
    assert response.status_code == HTTPStatus.CONFLICT
    assert response.json()["code"] == "not_approved"
    assert response.json()["status"] == "pending"


def test_a_claim_from_another_organisation_is_404(key_client, org_c, agent_c, pending):
    response = key_client(key_create(org_c, "org")).post(_approve_url(pending.action_id, "claim"))
    assert response.status_code == HTTPStatus.NOT_FOUND


def test_members_cannot_claim(member_client, alice, charlie, org_c, pending):
    assert member_client(alice).post(_approve_url(pending.action_id, "claim")).status_code == (
        HTTPStatus.FORBIDDEN
    )
    assert member_client(charlie).post(_approve_url(pending.action_id, "claim")).status_code == (
        HTTPStatus.NOT_FOUND
    )


def test_the_agent_cancels_its_pending_call(key_client, keys, pending):
    response = key_client(keys["agent"]).post(_approve_url(pending.action_id, "cancel"))
    assert response.status_code == HTTPStatus.OK
    assert response.json()["status"] == "cancelled"


def test_an_outsider_cannot_cancel(key_client, org_c, agent_c, pending):
    response = key_client(key_create(org_c, "agent", agent_c)).post(
        _approve_url(pending.action_id, "cancel")
    )
    assert response.status_code == HTTPStatus.NOT_FOUND


# --- Arden compatibility --------------------------------------------------------------------


def test_arden_approve_with_a_message_answers_2xx_json(key_client, keys, pending):
    response = key_client(keys["approver"]).post(
        f"/approve/{pending.action_id}", {"message": "looks right"}, format="json"
    )
    assert response.status_code == HTTPStatus.OK
    assert response.json()["status"] == "approved"
    pending.refresh_from_db()
    assert pending.notes == "looks right"


def test_arden_deny_with_a_null_message_denies(key_client, keys, pending):
    response = key_client(keys["approver"]).post(
        f"/deny/{pending.action_id}", {"message": None}, format="json"
    )
    assert response.status_code == HTTPStatus.OK
    assert response.json()["status"] == "denied"


def test_a_repeated_arden_approve_is_answered_2xx(key_client, keys, pending):
    client = key_client(keys["approver"])
    client.post(f"/approve/{pending.action_id}", {}, format="json")
    assert client.post(f"/approve/{pending.action_id}", {}, format="json").status_code == 200


def test_arden_deny_after_approval_is_409(key_client, keys, pending):
    client = key_client(keys["approver"])
    client.post(f"/approve/{pending.action_id}", {}, format="json")
    response = client.post(f"/deny/{pending.action_id}", {}, format="json")
    assert response.status_code == HTTPStatus.CONFLICT
    assert response.json()["status"] == "approved"


def test_arden_approve_with_an_agent_key_is_403(key_client, keys, pending):
    response = key_client(keys["agent"]).post(f"/approve/{pending.action_id}", {}, format="json")
    assert response.status_code == HTTPStatus.FORBIDDEN


def test_arden_approve_from_another_organisation_is_404(key_client, org_c, pending):
    response = key_client(key_create(org_c, "approver")).post(
        f"/approve/{pending.action_id}", {}, format="json"
    )
    assert response.status_code == HTTPStatus.NOT_FOUND


def test_approving_an_unknown_action_is_404(key_client, keys):
    response = key_client(keys["approver"]).post(_approve_url("act_nope"), {}, format="json")
    assert response.status_code == HTTPStatus.NOT_FOUND


# --- Bodies are read strictly ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/approve/{id}", {"message": 123}, "message"),
        ("/deny/{id}", {"message": ["no"]}, "message"),
        ("/approve/{id}", {"message": True}, "message"),
        ("/api/v1/actions/{id}/approve", {"notes": 5}, "notes"),
        ("/api/v1/actions/{id}/deny", {"notes": {"a": 1}}, "notes"),
        ("/api/v1/actions/{id}/cancel", {"reason": 7}, "reason"),
        ("/api/v1/actions/{id}/cancel", {"reason": {"why": "x"}}, "reason"),
    ],
)
def test_a_text_field_that_is_not_a_string_is_a_400_naming_it(
    key_client, keys, pending, url, body, field
):
    kind = "agent" if url.endswith("cancel") else "approver"
    response = key_client(keys[kind]).post(url.format(id=pending.action_id), body, format="json")
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content
    assert response.json()["field"] == field
    pending.refresh_from_db()
    assert pending.status == ApprovalRequest.Status.PENDING


@pytest.mark.parametrize(
    "url",
    [
        "/approve/{id}",
        "/deny/{id}",
        "/api/v1/actions/{id}/approve",
        "/api/v1/actions/{id}/deny",
        "/api/v1/actions/{id}/claim",
        "/api/v1/actions/{id}/cancel",
    ],
)
@pytest.mark.parametrize("raw", ["[]", '["message"]', '"approve"', "0", "null"])
def test_a_body_that_is_not_a_json_object_is_a_400(key_client, keys, pending, url, raw):
    kind = "agent" if url.endswith(("claim", "cancel")) else "approver"
    response = key_client(keys[kind]).post(
        url.format(id=pending.action_id), raw, content_type="application/json"
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content
    assert response.json()["code"] == "invalid"
    pending.refresh_from_db()
    assert pending.status == ApprovalRequest.Status.PENDING


def test_arden_approve_with_an_empty_body_still_approves(key_client, keys, pending):
    response = key_client(keys["approver"]).post(
        f"/approve/{pending.action_id}", b"", content_type="application/json"
    )
    assert response.status_code == HTTPStatus.OK
    assert response.json()["status"] == "approved"


def test_a_one_approver_decision_through_the_api_sends_a_bounded_number_of_statements(
    key_client, keys, make_request
):
    """Decision bursts compete with checks for the CPU (docs/PERFORMANCE.md): each statement
    costs the web process more than the database. The first call warms the key's cache."""
    warm, measured = make_request(), make_request()
    client = key_client(keys["approver"])
    assert client.post(_approve_url(warm.action_id), {}, format="json").status_code == 200
    with CaptureQueriesContext(connection) as queries:
        response = client.post(_approve_url(measured.action_id), {}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "approved"
    statements = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"].upper()]
    request_reads = [s for s in statements if s.startswith('SELECT "approvals_approvalrequest"')]
    assert len(request_reads) == 2  # authorise, then lock; the answer reuses the locked one
    assert not [
        s for s in statements if 'FROM "approvals_approvalvote" WHERE' in s and "LIMIT 1" in s
    ]
    # Reading the vote back for the answer, yes; asking whether one exists first, no.
    turn = connection.vendor == "postgresql"  # the organisation's turn (approvals/turns.py)
    assert len(statements) <= 11 + turn, statements
