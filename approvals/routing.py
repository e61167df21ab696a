"""Who may decide an approval request, and who is told about it: its approvers.

A request carries the approver references of the rule that held it (``approvers`` in the
rule's ``approval`` block, copied when the call was held; ``escalate_to`` after an
escalation). A reference is one of:

- ``role:owner`` / ``role:admin`` / ``role:approver``: members with that role **or a
  stronger one** (owner > admin > approver). ``role:approver`` therefore admits every member
  who may decide at all, ``role:admin`` admins and owners, ``role:owner`` owners only.
- ``group:NAME``: the members of the organisation's group of that name (any case).
- ``user:EMAIL``: the member with that email address (any case).

A member is admitted only if their role may decide approvals at all: a viewer named by
email or put in a group is never an approver. A reference that resolves to nobody (an
unknown or deleted group, an address that is not a member) admits nobody: routing fails
closed, it never falls back to "everyone". An empty list means no routing: every member
whose role may decide (the behaviour without ``approvers``).

Reads only; ``approvals.services._authorize_decider`` is the one place that enforces it and
``approvals.notifications`` uses it to choose recipients.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db.models import Q

from accounts.models import MemberGroup, Membership, User
from accounts.permissions import Capability, roles_with

DECIDING_ROLES = roles_with(Capability.DECIDE_APPROVALS)
ROLE_RANK = {
    Membership.Role.APPROVER: 1,
    Membership.Role.ADMIN: 2,
    Membership.Role.OWNER: 3,
}


def _split(references: Iterable[str]) -> tuple[set[str], set[str], set[str]]:
    """(roles, group names lower-cased, emails lower-cased)."""
    roles: set[str] = set()
    groups: set[str] = set()
    emails: set[str] = set()
    for reference in references:
        kind, _, value = str(reference).partition(":")
        value = value.strip()
        if kind == "role":
            roles.add(value.lower())
        elif kind == "group":
            groups.add(value.lower())
        elif kind == "user":
            emails.add(value.lower())
        # anything else admits nobody (the validator never writes one)
    return roles, groups, emails


def _roles_admitted(roles: set[str]) -> set[str]:
    """The member roles a set of ``role:`` references admits (a role or a stronger one)."""
    floor = min((ROLE_RANK[r] for r in roles if r in ROLE_RANK), default=None)
    if floor is None:
        return set()
    return {role for role, rank in ROLE_RANK.items() if rank >= floor}


def _groups_q(organization_id: int, names: set[str]) -> Q:
    q = Q()
    for name in names:
        q |= Q(name__iexact=name)
    return Q(organization_id=organization_id) & q


def approvers_admit(
    *, approvers: Sequence[str], organization_id: int, user: User, role: str | None
) -> bool:
    """Whether the member ``user`` (with ``role`` in the organisation) is one of
    ``approvers``. False for a role that may not decide."""
    if role not in DECIDING_ROLES:
        return False
    if not approvers:
        return True
    roles, groups, emails = _split(approvers)
    if role in _roles_admitted(roles):
        return True
    if user.email.lower() in emails:
        return True
    if groups:
        return MemberGroup.objects.filter(_groups_q(organization_id, groups), members=user).exists()
    return False


def routed_user_ids(*, organization_id: int, approvers: Sequence[str]) -> set[int] | None:
    """The ids of the organisation's members ``approvers`` admits; None when the list is
    empty (everyone who may decide)."""
    if not approvers:
        return None
    roles, groups, emails = _split(approvers)
    who = Q(role__in=_roles_admitted(roles))
    for email in emails:
        who |= Q(user__email__iexact=email)
    if groups:
        group_ids = list(
            MemberGroup.objects.filter(_groups_q(organization_id, groups)).values_list(
                "pk", flat=True
            )
        )
        if group_ids:
            who |= Q(user__member_groups__in=group_ids)
    return set(
        Membership.objects.filter(who, organization_id=organization_id, role__in=DECIDING_ROLES)
        .values_list("user_id", flat=True)
        .distinct()
    )


def unknown_groups(*, organization_id: int, references: Iterable[str]) -> list[str]:
    """The ``group:`` names in ``references`` that name no group of the organisation (they
    admit nobody)."""
    names = {}
    for reference in references:
        kind, _, value = str(reference).partition(":")
        if kind == "group" and value.strip():
            names.setdefault(value.strip().lower(), value.strip())
    if not names:
        return []
    known = {
        name.lower()
        for name in MemberGroup.objects.filter(_groups_q(organization_id, set(names))).values_list(
            "name", flat=True
        )
    }
    return sorted(original for lowered, original in names.items() if lowered not in known)


def approvers_text(approvers: Sequence[str]) -> str:
    return ", ".join(approvers) if approvers else "every member who may decide"
