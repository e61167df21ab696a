"""Approver keys belong to the member who created them: they need one to be created, and they
stop working when that person leaves the organisation (at once in the process that removed
them, through the real key authenticator and its 5 s cache)."""

from __future__ import annotations

import importlib
from http import HTTPStatus

import pytest
from django.apps import apps as django_apps

from accounts import services as account_services
from accounts.models import Membership
from agents import services
from agents.models import ApiKey
from audit.models import AuditEntry
from tests.factories import MembershipFactory, UserFactory
from wardenproject.errors import NotFound, ValidationFailed

pytestmark = pytest.mark.django_db


@pytest.fixture
def dana(org_a):
    """Dana is an admin in Alice's organisation: she mints approver keys."""
    user = UserFactory(email="dana@example.com")
    MembershipFactory(user=user, organization=org_a, role=Membership.Role.ADMIN)
    return user


def _list_approvals(client, raw: str):
    return client.get("/api/v1/approvals", HTTP_X_API_KEY=raw)


def _membership(user, organization) -> Membership:
    return Membership.objects.get(user=user, organization=organization)


def test_a_removed_members_approver_key_is_refused_at_once(client, alice, dana, org_a):
    _key, raw = services.api_key_create(organization=org_a, kind="approver", actor=dana)
    assert _list_approvals(client, raw).status_code == HTTPStatus.OK  # now in the key cache

    account_services.membership_remove(actor=alice, membership=_membership(dana, org_a))

    response = _list_approvals(client, raw)
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json()["code"] == "unauthenticated"


def test_a_member_who_leaves_loses_her_approver_keys(client, dana, org_a):
    _key, raw = services.api_key_create(organization=org_a, kind="approver", actor=dana)
    assert _list_approvals(client, raw).status_code == HTTPStatus.OK
    account_services.membership_remove(actor=dana, membership=_membership(dana, org_a))
    assert _list_approvals(client, raw).status_code == HTTPStatus.UNAUTHORIZED


def test_removing_a_member_revokes_her_approver_keys_in_the_audit_log(alice, dana, org_a):
    key, _raw = services.api_key_create(organization=org_a, kind="approver", actor=dana)
    account_services.membership_remove(actor=alice, membership=_membership(dana, org_a))
    key.refresh_from_db()
    assert key.revoked_at is not None
    entry = AuditEntry.objects.get(target_id=key.public_id, data__verb="revoked")
    assert entry.actor_user == alice


def test_removing_a_member_keeps_the_agent_and_org_keys_she_created(client, alice, dana, org_a):
    """Agent and organisation keys belong to the organisation: a departure must not stop
    production agents. Only approver keys vote as a person."""
    org_key, raw = services.api_key_create(organization=org_a, kind="org", actor=dana)
    account_services.membership_remove(actor=alice, membership=_membership(dana, org_a))
    org_key.refresh_from_db()
    assert org_key.revoked_at is None
    assert _list_approvals(client, raw).status_code == HTTPStatus.OK


def test_an_approver_key_whose_creator_was_deleted_is_refused(client, dana, org_a):
    _key, raw = services.api_key_create(organization=org_a, kind="approver", actor=dana)
    dana.delete()
    assert _list_approvals(client, raw).status_code == HTTPStatus.UNAUTHORIZED


def test_an_approver_key_whose_creator_was_deactivated_is_refused(client, dana, org_a):
    _key, raw = services.api_key_create(organization=org_a, kind="approver", actor=dana)
    dana.is_active = False
    dana.save(update_fields=["is_active"])
    assert _list_approvals(client, raw).status_code == HTTPStatus.UNAUTHORIZED


def test_an_approver_key_of_a_member_demoted_to_viewer_cannot_decide(
    client, alice, dana, org_a, support_bot
):
    from tests.approvals.conftest import request_create

    pending = request_create(support_bot)
    _key, raw = services.api_key_create(organization=org_a, kind="approver", actor=dana)
    account_services.membership_change_role(
        actor=alice, membership=_membership(dana, org_a), role=Membership.Role.VIEWER
    )
    response = client.post(
        f"/api/v1/actions/{pending.action_id}/approve",
        data="{}",
        content_type="application/json",
        HTTP_X_API_KEY=raw,
    )
    assert response.status_code == HTTPStatus.FORBIDDEN
    pending.refresh_from_db()
    assert pending.status == "pending"


def test_an_approver_key_needs_a_member_to_create_it(org_a):
    with pytest.raises(ValidationFailed) as raised:
        services.api_key_create(organization=org_a, kind="approver", actor=None)
    assert raised.value.field == "kind"


def test_an_outsider_cannot_create_an_approver_key_for_an_organisation(org_a, charlie):
    with pytest.raises(NotFound):
        services.api_key_create(organization=org_a, kind="approver", actor=charlie)


def test_agent_and_org_keys_may_still_be_created_without_a_member(org_a, support_bot):
    services.api_key_create(organization=org_a, kind="org", actor=None)
    services.api_key_create(organization=org_a, kind="agent", agent=support_bot, actor=None)


def test_rotating_an_approver_key_gives_the_new_key_to_whoever_rotated_it(alice, dana, org_a):
    """The rotator is shown the new secret, so the new key votes as the rotator."""
    key, _raw = services.api_key_create(organization=org_a, kind="approver", actor=dana)
    new, _new_raw = services.api_key_rotate(api_key=key, actor=alice)
    assert new.created_by == alice


def test_the_migration_revokes_approver_keys_that_belong_to_no_member(alice, dana, org_a):
    """Keys made before approver keys belonged to people (a management command, a creator
    who left): revoked, with an audit entry, rather than left to vote as nobody."""
    kept, _ = services.api_key_create(organization=org_a, kind="approver", actor=dana)
    orphans = [
        ApiKey.objects.create(
            organization=org_a,
            kind="approver",
            name=f"old {n}",
            prefix="wdn_apv_x",
            hashed_key=f"{n:064d}",
            created_by=creator,
        )
        for n, creator in enumerate([None, UserFactory(email="gone@example.com")])
    ]
    migration = importlib.import_module("agents.migrations.0004_revoke_memberless_approver_keys")

    migration.revoke_memberless_approver_keys(django_apps, None)

    kept.refresh_from_db()
    assert kept.revoked_at is None
    for orphan in orphans:
        orphan.refresh_from_db()
        assert orphan.revoked_at is not None
        entry = AuditEntry.objects.get(target_id=orphan.public_id)
        assert entry.data["verb"] == "revoked"
        assert entry.source == "migration"
