"""Approver routing: a rule's ``approvers`` limit who may decide its requests (every channel)
and who is emailed about them. Personas: Alice owns Acme, Bob is an approver there, Vera a
viewer; Dana (an admin) and Finn (an approver in group finance) join them here."""

from __future__ import annotations

from http import HTTPStatus

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core import mail
from django.urls import reverse

from accounts.models import MemberGroup, Membership
from approvals.models import ApprovalRequest
from approvals.routing import routed_user_ids
from approvals.services import NotAnApprover, approval_decide
from approvals.tasks import approvals_notify
from tests.approvals.conftest import approval_spec, key_create, request_create
from tests.factories import MembershipFactory, UserFactory
from wardenproject.errors import Forbidden

pytestmark = pytest.mark.django_db


@pytest.fixture
def dana(org_a):
    user = UserFactory(email="dana@example.com")
    MembershipFactory(user=user, organization=org_a, role=Membership.Role.ADMIN)
    return user


@pytest.fixture
def finn(org_a):
    user = UserFactory(email="finn@example.com")
    MembershipFactory(user=user, organization=org_a, role=Membership.Role.APPROVER)
    return user


@pytest.fixture
def finance(org_a, finn, vera):
    group = MemberGroup.objects.create(organization=org_a, name="finance")
    group.members.add(finn, vera)  # Vera is a viewer: being in the group gives her no vote
    return group


def routed(agent, *approvers: str, **more) -> ApprovalRequest:
    return request_create(agent, spec=approval_spec(approvers=tuple(approvers), **more))


def decide(request: ApprovalRequest, user) -> ApprovalRequest:
    return approval_decide(request_or_action_id=request, actor_user=user, approve=True)


# --- who is admitted -------------------------------------------------------------------------


def test_the_rules_approvers_are_copied_onto_the_request(agent_a):
    request = routed(agent_a, "group:finance", "user:bob@example.com")
    request.refresh_from_db()
    assert request.approvers == ["group:finance", "user:bob@example.com"]


def test_without_approvers_every_deciding_member_may_decide(agent_a, bob):
    assert decide(request_create(agent_a), bob).status == "approved"


@pytest.mark.parametrize(
    ("reference", "admitted", "refused"),
    [
        ("role:approver", {"alice", "bob", "dana"}, set()),
        ("role:admin", {"alice", "dana"}, {"bob"}),
        ("role:owner", {"alice"}, {"bob", "dana"}),
    ],
)
def test_a_role_reference_admits_that_role_and_the_stronger_ones(
    agent_a, alice, bob, dana, reference, admitted, refused
):
    people = {"alice": alice, "bob": bob, "dana": dana}
    ids = routed_user_ids(organization_id=agent_a.organization_id, approvers=[reference])
    assert {name for name, user in people.items() if user.pk in ids} == admitted
    for name in refused:
        with pytest.raises(NotAnApprover):
            decide(routed(agent_a, reference), people[name])
    for name in admitted:
        assert decide(routed(agent_a, reference), people[name]).status == "approved"


def test_a_group_admits_its_members_who_may_decide(agent_a, finance, finn, bob):
    assert decide(routed(agent_a, "group:finance"), finn).status == "approved"
    with pytest.raises(NotAnApprover, match="group:finance"):
        decide(routed(agent_a, "group:finance"), bob)


def test_a_viewer_in_the_group_still_cannot_decide(agent_a, finance, vera):
    with pytest.raises(Forbidden):
        decide(routed(agent_a, "group:finance"), vera)


def test_group_names_match_whatever_their_case(agent_a, finance, finn):
    assert decide(routed(agent_a, "group:Finance"), finn).status == "approved"


def test_a_user_reference_admits_that_member_only(agent_a, bob, alice):
    assert decide(routed(agent_a, "user:bob@example.com"), bob).status == "approved"
    with pytest.raises(NotAnApprover):
        decide(routed(agent_a, "user:bob@example.com"), alice)  # not even the owner


def test_an_unknown_group_admits_nobody(agent_a, alice, bob):
    request = routed(agent_a, "group:nosuch")
    for user in (alice, bob):
        with pytest.raises(NotAnApprover):
            decide(request, user)
    request.refresh_from_db()
    assert request.status == "pending"


def test_deleting_the_group_closes_its_requests_to_everyone(agent_a, finance, finn, alice):
    request = routed(agent_a, "group:finance")
    finance.delete()
    for user in (finn, alice):
        with pytest.raises(NotAnApprover):
            decide(request, user)


def test_a_group_of_another_organisation_admits_nobody(agent_a, org_c, charlie, finn):
    other = MemberGroup.objects.create(organization=org_c, name="finance")
    other.members.add(finn)  # (bad data: Finn is not in Charlie Co) still no vote in Acme
    with pytest.raises(NotAnApprover):
        decide(routed(agent_a, "group:finance"), finn)


def test_a_refusal_changes_nothing_and_leaves_no_vote(agent_a, bob):
    request = routed(agent_a, "role:owner")
    with pytest.raises(NotAnApprover):
        decide(request, bob)
    assert request.votes.count() == 0


# --- every channel ---------------------------------------------------------------------------


def test_the_dashboard_answers_403_naming_the_approvers(client, agent_a, bob):
    request = routed(agent_a, "role:admin")
    client.force_login(bob)
    response = client.post(
        reverse("approvals:decide", args=[request.action_id]), {"decision": "approve"}
    )
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert "not one of this request&#x27;s approvers" in response.content.decode()
    assert "role:admin" in response.content.decode()
    request.refresh_from_db()
    assert request.status == "pending"


def test_the_api_answers_403_not_an_approver_to_a_member(member_client, agent_a, bob):
    request = routed(agent_a, "role:admin")
    response = member_client(bob).post(
        f"/api/v1/actions/{request.action_id}/approve", {}, format="json"
    )
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert response.json()["code"] == "not_an_approver"
    assert response.json()["approvers"] == ["role:admin"]


def test_an_approver_key_votes_as_its_creator_and_is_refused_like_them(
    key_client, org_a, agent_a, bob
):
    request = routed(agent_a, "role:admin")
    key = key_create(org_a, "approver", created_by=bob)
    url = f"/api/v1/actions/{request.action_id}/approve"
    response = key_client(key).post(url, {}, format="json")
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert "votes as bob@example.com" in response.json()["detail"]
    request.refresh_from_db()
    assert request.status == "pending"


def test_an_approver_key_of_an_approver_decides(key_client, org_a, agent_a, dana):
    request = routed(agent_a, "role:admin")
    key = key_create(org_a, "approver", created_by=dana)
    url = f"/api/v1/actions/{request.action_id}/approve"
    response = key_client(key).post(url, {}, format="json")
    assert response.status_code == HTTPStatus.OK
    assert response.json()["status"] == "approved"


def test_the_admin_refuses_a_staff_member_who_is_not_an_approver(client, agent_a, bob):
    bob.is_staff = bob.is_superuser = True
    bob.save()
    request = routed(agent_a, "user:alice@example.com")
    client.force_login(bob)
    response = client.post(
        "/admin/approvals/approvalrequest/",
        {"action": "approve_selected", ACTION_CHECKBOX_NAME: [request.pk], "confirm": "yes"},
        follow=True,
    )
    assert "not one of this request" in response.content.decode()
    request.refresh_from_db()
    assert request.status == "pending"


def test_an_outsider_still_gets_404_not_403(member_client, agent_a, charlie, org_c):
    request = routed(agent_a, "role:admin")
    response = member_client(charlie).post(
        f"/api/v1/actions/{request.action_id}/approve", {}, format="json"
    )
    assert response.status_code == HTTPStatus.NOT_FOUND


# --- who is emailed --------------------------------------------------------------------------


def recipients() -> list[str]:
    return sorted(message.to[0] for message in mail.outbox)


def test_only_the_requests_approvers_are_emailed(org_a, agent_a, finance, finn):
    routed(agent_a, "group:finance")
    approvals_notify(org_a.pk)
    assert recipients() == ["finn@example.com"]  # not Alice, Bob, nor Vera the viewer


def test_without_approvers_every_reviewer_is_emailed(org_a, agent_a, dana):
    request_create(agent_a)
    approvals_notify(org_a.pk)
    assert recipients() == ["alice@example.com", "bob@example.com", "dana@example.com"]


def test_an_unknown_group_is_emailed_to_nobody(org_a, agent_a):
    request = routed(agent_a, "group:nosuch")
    approvals_notify(org_a.pk)
    assert mail.outbox == []
    request.refresh_from_db()
    assert request.notified_at is not None  # handled: it is not sent again and again


def test_a_digest_lists_for_each_reviewer_only_their_requests(org_a, agent_a, dana):
    for_admins = routed(agent_a, "role:admin")
    for_everyone = request_create(agent_a, action="db.read")
    approvals_notify(org_a.pk)
    by_person = {message.to[0]: message for message in mail.outbox}
    assert sorted(by_person) == ["alice@example.com", "bob@example.com", "dana@example.com"]
    bob_mail = by_person["bob@example.com"]
    assert for_everyone.action_id in bob_mail.body
    assert for_admins.action_id not in bob_mail.body
    assert "2 approval requests" in by_person["dana@example.com"].subject


def test_a_check_held_by_a_routed_rule_snapshots_its_lists_onto_the_request(
    org_a, agent_a, alice, keys, key_client
):
    from agents import services as agent_services

    rule = agent_services.rule_create(
        organization=org_a,
        agent=agent_a,
        data={
            "name": "large refunds",
            "action": "stripe.refund",
            "effect": "requires_approval",
            "approval": {
                "timeout": "30m",
                "approvers": ["group:finance", "user:Bob@Example.com"],
                "on_timeout": "escalate",
                "escalate_to": ["role:admin"],
                "escalate_timeout": "10m",
                "redact": ["card_number"],
            },
        },
        actor=alice,
    )
    response = key_client(keys["agent"]).post(
        "/api/v1/check", {"action": "stripe.refund", "arguments": {"amount": 5}}, format="json"
    )
    assert response.json()["decision"] == "requires_approval"
    request = ApprovalRequest.objects.get(action_id=response.json()["action_id"])
    assert request.approvers == ["group:finance", "user:bob@example.com"]
    assert (request.escalate_to, request.escalate_timeout) == (["role:admin"], 600)
    assert request.redact == ["card_number"]
    assert (request.reminder_due_at - request.requested_at).total_seconds() == 900
    # Changing the rule later does not change who decides the request already held.
    agent_services.rule_update(
        rule=rule, data={"approval": {"approvers": ["role:owner"]}}, actor=alice
    )
    request.refresh_from_db()
    assert request.approvers == ["group:finance", "user:bob@example.com"]


def test_the_detail_page_names_the_approvers_and_who_comes_next(client, agent_a, bob):
    request = routed(
        agent_a, "role:admin", on_timeout="escalate", escalate_to=("user:alice@example.com",)
    )
    client.force_login(bob)
    page = client.get(reverse("approvals:detail", args=[request.action_id])).content.decode()
    assert "role:admin" in page
    assert "(then user:alice@example.com)" in page


def test_the_detail_page_offers_no_buttons_to_a_member_who_is_not_an_approver(client, agent_a, bob):
    request = routed(agent_a, "role:admin")
    client.force_login(bob)
    page = client.get(reverse("approvals:detail", args=[request.action_id])).content.decode()
    assert 'value="approve"' not in page
    assert "not one of this request&#x27;s approvers" in page


def test_the_detail_page_offers_the_buttons_to_an_approver(client, agent_a, alice):
    request = routed(agent_a, "role:admin")
    client.force_login(alice)
    page = client.get(reverse("approvals:detail", args=[request.action_id])).content.decode()
    assert 'value="approve"' in page
