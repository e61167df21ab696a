"""Separation of duties: a person has one vote on a request, whatever the credential.

An approver key belongs to the member who created it and votes as that person, so an owner
who approved in the session cannot approve again with a key she minted, and a quorum of two
needs two distinct people. Through the real API: session cookies and the real key
authenticator.
"""

from __future__ import annotations

from http import HTTPStatus

import pytest
from rest_framework.test import APIClient

from accounts.models import Membership
from agents.services import api_key_create
from approvals.models import ApprovalRequest, ApprovalVote
from approvals.services import approval_decide
from audit.models import AuditEntry
from tests.factories import MembershipFactory, UserFactory, plan
from wardenproject.errors import Conflict

pytestmark = pytest.mark.django_db


@pytest.fixture
def business_org(org_a):
    org_a.plan = plan("business")
    org_a.save()
    return org_a


@pytest.fixture
def dana(org_a):
    """Dana is an admin in Alice's organisation (admins mint keys and decide)."""
    user = UserFactory(email="dana@example.com")
    MembershipFactory(user=user, organization=org_a, role=Membership.Role.ADMIN)
    return user


def _minted_by(user, organization) -> str:
    return api_key_create(organization=organization, kind="approver", actor=user)[1]


def _key_client(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    return client


def _approve(client: APIClient, request: ApprovalRequest):
    return client.post(f"/api/v1/actions/{request.action_id}/approve", {}, format="json")


def test_an_owner_who_approved_in_the_session_gets_409_approving_again_with_her_own_key(
    business_org, alice, make_request, member_client
):
    request = make_request(approvals_required=2)
    assert _approve(member_client(alice), request).status_code == HTTPStatus.OK
    raw = _minted_by(alice, business_org)

    response = _approve(_key_client(raw), request)

    assert response.status_code == HTTPStatus.CONFLICT
    assert response.json()["code"] == "already_voted"
    request.refresh_from_db()
    assert request.status == ApprovalRequest.Status.PENDING
    assert request.votes.count() == 1


def test_an_admin_who_approved_with_her_key_gets_409_approving_again_in_the_session(
    business_org, dana, make_request, member_client
):
    request = make_request(approvals_required=2)
    assert _approve(_key_client(_minted_by(dana, business_org)), request).status_code == 200

    response = _approve(member_client(dana), request)

    assert response.status_code == HTTPStatus.CONFLICT
    assert response.json()["code"] == "already_voted"
    request.refresh_from_db()
    assert request.status == ApprovalRequest.Status.PENDING


def test_two_keys_of_one_person_are_one_vote(business_org, alice, make_request):
    request = make_request(approvals_required=2)
    first, second = _minted_by(alice, business_org), _minted_by(alice, business_org)
    assert _approve(_key_client(first), request).status_code == HTTPStatus.OK
    assert _approve(_key_client(second), request).status_code == HTTPStatus.CONFLICT
    request.refresh_from_db()
    assert request.status == ApprovalRequest.Status.PENDING


def test_a_quorum_of_two_is_met_by_two_distinct_people(
    business_org, alice, bob, make_request, member_client
):
    request = make_request(approvals_required=2)
    assert _approve(_key_client(_minted_by(alice, business_org)), request).status_code == 200
    assert _approve(member_client(bob), request).status_code == HTTPStatus.OK
    request.refresh_from_db()
    assert request.status == ApprovalRequest.Status.APPROVED
    assert set(request.votes.values_list("user__email", flat=True)) == {
        "alice@example.com",
        "bob@example.com",
    }


def test_a_key_vote_is_recorded_as_its_creator_through_the_key(business_org, alice, pending):
    key, _raw = api_key_create(organization=business_org, kind="approver", actor=alice)
    decided = approval_decide(request_or_action_id=pending, actor_key=key, approve=True)
    vote = decided.votes.get()
    assert (vote.user, vote.api_key) == (alice, key)
    assert decided.decided_by == alice
    assert decided.decided_by_key == key
    assert decided.decided_by_label == f"alice@example.com (key {key.prefix}…)"
    entry = AuditEntry.objects.get(kind=AuditEntry.Kind.DECISION, action_id=pending.action_id)
    assert (entry.actor_user, entry.actor_key) == (alice, key)


def test_the_service_refuses_a_session_voter_approving_again_with_her_key(
    business_org, alice, make_request
):
    request = make_request(approvals_required=2)
    key, _raw = api_key_create(organization=business_org, kind="approver", actor=alice)
    approval_decide(request_or_action_id=request, actor_user=alice, approve=True)
    with pytest.raises(Conflict) as raised:
        approval_decide(request_or_action_id=request, actor_key=key, approve=True)
    assert raised.value.code == "already_voted"
    assert ApprovalVote.objects.filter(request=request, user=alice).count() == 1


def test_the_migration_gives_earlier_key_votes_their_creator(business_org, alice, make_request):
    """A pending quorum request with a key vote from before the change must not let that
    key's creator vote again in the session."""
    import importlib

    from django.apps import apps as django_apps

    request = make_request(approvals_required=2)
    key, _raw = api_key_create(organization=business_org, kind="approver", actor=alice)
    ApprovalVote.objects.create(request=request, api_key=key, voter_label="key", vote="approve")
    migration = importlib.import_module(
        "approvals.migrations.0003_key_votes_count_as_their_creator"
    )

    migration.votes_count_as_their_creator(django_apps, None)

    assert request.votes.get().user == alice
    with pytest.raises(Conflict):
        approval_decide(request_or_action_id=request, actor_user=alice, approve=True)
