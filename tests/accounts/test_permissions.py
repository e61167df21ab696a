from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.http import Http404

from accounts.models import Membership
from accounts.permissions import (
    Capability,
    NotAMember,
    RoleForbidden,
    membership_require,
    role_can_assign,
    role_has,
)
from wardenproject.errors import Forbidden, NotFound

Role = Membership.Role
C = Capability

# capability: (owner, admin, approver, viewer)
TABLE = {
    C.READ: (True, True, True, True),
    C.DECIDE_APPROVALS: (True, True, True, False),
    C.MANAGE_AGENTS: (True, True, False, False),
    C.MANAGE_WEBHOOKS: (True, True, False, False),
    C.MANAGE_MEMBERS: (True, True, False, False),
    C.MANAGE_ORGANIZATION: (True, False, False, False),
    C.MANAGE_PLAN: (True, False, False, False),
}
ROLES = (Role.OWNER, Role.ADMIN, Role.APPROVER, Role.VIEWER)
CASES = [
    (capability, role, allowed)
    for capability, row in TABLE.items()
    for role, allowed in zip(ROLES, row, strict=True)
]


def test_the_table_covers_every_capability():
    assert set(TABLE) == set(Capability)


@pytest.mark.parametrize(("capability", "role", "allowed"), CASES)
def test_each_role_has_exactly_its_capabilities(capability, role, allowed):
    assert role_has(role, capability) is allowed


@pytest.mark.parametrize(("capability", "role", "allowed"), CASES)
def test_membership_require_lets_allowed_roles_through_and_refuses_others_with_403(
    org_a, capability, role, allowed
):
    from tests.factories import MembershipFactory, UserFactory

    user = UserFactory()
    MembershipFactory(user=user, organization=org_a, role=role)
    if allowed:
        membership = membership_require(user=user, organization=org_a, capability=capability)
        assert membership.role == role
    else:
        with pytest.raises(RoleForbidden) as caught:
            membership_require(user=user, organization=org_a, capability=capability)
        assert isinstance(caught.value, PermissionDenied)
        assert isinstance(caught.value, Forbidden)


def test_membership_require_answers_404_to_an_outsider(org_a, charlie):
    with pytest.raises(NotAMember) as caught:
        membership_require(user=charlie, organization=org_a, capability=Capability.READ)
    assert isinstance(caught.value, Http404)
    assert isinstance(caught.value, NotFound)


def test_admins_cannot_make_anyone_an_owner_but_owners_can():
    assert role_can_assign(Role.ADMIN, Role.APPROVER)
    assert not role_can_assign(Role.ADMIN, Role.OWNER)
    assert role_can_assign(Role.OWNER, Role.OWNER)
    assert not role_can_assign(Role.APPROVER, Role.VIEWER)


def test_membership_require_answers_404_when_the_request_has_no_organisation(rf, db):
    from django.utils.functional import SimpleLazyObject

    from tests.factories import UserFactory

    lazy_none = SimpleLazyObject(lambda: None)
    with pytest.raises(NotAMember):
        membership_require(user=UserFactory(), organization=lazy_none)
