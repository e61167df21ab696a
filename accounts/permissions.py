"""Who may do what inside an organisation: the one permission helper every app uses.

Public API (names are stable; other apps import them):

``Capability``
    What a member may do. ``READ`` (see everything in the organisation),
    ``DECIDE_APPROVALS`` (approve or deny approval requests), ``MANAGE_AGENTS`` (agents,
    rules and API keys), ``MANAGE_WEBHOOKS`` (webhook endpoints and their secrets),
    ``MANAGE_MEMBERS`` (invite, change roles, remove), ``MANAGE_ORGANIZATION`` (name and
    default approval timeout) and ``MANAGE_PLAN`` (change the subscription plan).

``ROLE_CAPABILITIES``
    The table role -> capabilities::

        owner     everything
        admin     read, decide_approvals, manage_agents, manage_webhooks,
                  manage_members (not owners)
        approver  read, decide_approvals
        viewer    read

    An admin manages members but can neither touch an owner nor make anyone an owner
    (``role_can_assign`` / ``membership_can_manage``).

``role_has(role, capability) -> bool`` and ``membership_has(membership, capability) -> bool``
    Pure questions, for templates and for deciding what to show.

``roles_with(capability) -> frozenset[str]``
    The roles that have a capability, for queries (whom to notify).

``membership_require(*, user, organization, capability=Capability.READ) -> Membership``
    The gate. Returns the user's membership of ``organization``. Raises ``NotAMember``
    (a 404: ``Http404`` and ``wardenproject.errors.NotFound``) when the user is not a
    member, so outsiders learn nothing, and ``RoleForbidden`` (a 403: ``PermissionDenied``
    and ``wardenproject.errors.Forbidden``) when the member's role lacks the capability.
    Both work in HTML views (Django's 404/403 handling) and in DRF views (the API
    exception handler answers ``{code, detail, field}``).

``membership_require_capability(membership, capability) -> Membership``
    The role check alone, for a membership already in hand.

``membership_require_by_public_id(*, user, organization_public_id, capability) -> Membership``
    The same, starting from the organisation's public id in a URL.
"""

from __future__ import annotations

from enum import StrEnum

from django.core.exceptions import PermissionDenied
from django.http import Http404

from accounts.models import Membership, Organization, User
from wardenproject.errors import Forbidden, NotFound

Role = Membership.Role


class Capability(StrEnum):
    READ = "read"
    DECIDE_APPROVALS = "decide_approvals"
    MANAGE_AGENTS = "manage_agents"
    MANAGE_WEBHOOKS = "manage_webhooks"
    MANAGE_MEMBERS = "manage_members"
    MANAGE_ORGANIZATION = "manage_organization"
    MANAGE_PLAN = "manage_plan"


ROLE_CAPABILITIES: dict[str, frozenset[Capability]] = {
    Role.OWNER: frozenset(Capability),
    Role.ADMIN: frozenset(
        {
            Capability.READ,
            Capability.DECIDE_APPROVALS,
            Capability.MANAGE_AGENTS,
            Capability.MANAGE_WEBHOOKS,
            Capability.MANAGE_MEMBERS,
        }
    ),
    Role.APPROVER: frozenset({Capability.READ, Capability.DECIDE_APPROVALS}),
    Role.VIEWER: frozenset({Capability.READ}),
}

CAPABILITY_LABELS = {
    Capability.READ: "view this organisation",
    Capability.DECIDE_APPROVALS: "decide approval requests",
    Capability.MANAGE_AGENTS: "manage agents, rules and keys",
    Capability.MANAGE_WEBHOOKS: "manage webhooks",
    Capability.MANAGE_MEMBERS: "manage members",
    Capability.MANAGE_ORGANIZATION: "change organisation settings",
    Capability.MANAGE_PLAN: "change the plan",
}


class NotAMember(NotFound, Http404):
    """404 for pages and APIs alike: the organisation (or object) does not exist for you."""


class RoleForbidden(Forbidden, PermissionDenied):
    """403: you are a member, but your role does not allow this."""


class OperatorOnly(Forbidden, PermissionDenied):
    """403: an operator's change (``as_operator``, the plan catalogue, token prices) made by
    someone who is not staff."""

    code = "operator_only"


def operator_require(actor: User | None) -> None:
    """Operators' changes come from staff in the admin, or from a command (``actor`` None:
    the audit entry names the system)."""
    if actor is not None and not actor.is_staff:
        raise OperatorOnly("Only staff make this change from the admin.")


def role_has(role: str, capability: Capability | str) -> bool:
    return Capability(capability) in ROLE_CAPABILITIES.get(role, frozenset())


def roles_with(capability: Capability | str) -> frozenset[str]:
    """Every role that has ``capability`` (for queries such as "whom do we email")."""
    capability = Capability(capability)
    return frozenset(role for role, caps in ROLE_CAPABILITIES.items() if capability in caps)


def membership_has(membership: Membership | None, capability: Capability | str) -> bool:
    return membership is not None and role_has(membership.role, capability)


def role_can_assign(actor_role: str, role: str) -> bool:
    """May a member with ``actor_role`` give someone ``role`` (by invitation or change)?"""
    if not role_has(actor_role, Capability.MANAGE_MEMBERS):
        return False
    return actor_role == Role.OWNER or role != Role.OWNER


def membership_can_manage(actor: Membership, target: Membership) -> bool:
    """May ``actor`` change the role of, or remove, ``target``? (Admins never touch owners.)"""
    if not membership_has(actor, Capability.MANAGE_MEMBERS):
        return False
    return actor.role == Role.OWNER or target.role != Role.OWNER


def roles_assignable_by(actor_role: str) -> list[str]:
    return [role for role in Role.values if role_can_assign(actor_role, role)]


def _forbidden(role: str, capability: Capability) -> RoleForbidden:
    return RoleForbidden(
        f"Your role ({Role(role).label}) does not allow you to {CAPABILITY_LABELS[capability]}.",
        extra={"capability": capability.value},
    )


def membership_require(
    *,
    user: User,
    organization: Organization | None,
    capability: Capability | str = Capability.READ,
) -> Membership:
    """The user's membership of ``organization``: 404 for outsiders, 403 for a weak role."""
    capability = Capability(capability)
    # ``not organization`` (rather than ``is None``) also sees through request.organization,
    # a lazy object that may wrap None.
    if not organization or user is None or not user.is_authenticated:
        raise NotAMember("No such organisation.")
    membership = (
        Membership.objects.select_related("organization__plan", "user")
        .filter(user=user, organization_id=organization.pk)
        .first()
    )
    if membership is None:
        raise NotAMember("No such organisation.")
    return membership_require_capability(membership, capability)


def membership_require_capability(
    membership: Membership, capability: Capability | str
) -> Membership:
    """For a membership already in hand (after the object it acts on was found): 403 unless
    its role has ``capability``."""
    if not role_has(membership.role, capability):
        raise _forbidden(membership.role, Capability(capability))
    return membership


def membership_require_by_public_id(
    *,
    user: User,
    organization_public_id: str,
    capability: Capability | str = Capability.READ,
) -> Membership:
    capability = Capability(capability)
    if user is None or not user.is_authenticated:
        raise NotAMember("No such organisation.")
    membership = (
        Membership.objects.select_related("organization__plan", "user")
        .filter(user=user, organization__public_id=organization_public_id)
        .first()
    )
    if membership is None:
        raise NotAMember("No such organisation.")
    return membership_require_capability(membership, capability)
