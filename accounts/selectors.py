from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from accounts.models import Invitation, MemberGroup, Membership, Organization, Plan, User
from wardenproject.text import counted


def organization_current_for_user(*, user: User) -> Organization | None:
    """The user's current organisation, falling back to their first membership."""
    if user.current_organization_id:
        membership = (
            Membership.objects.select_related("organization__plan")
            .filter(user=user, organization_id=user.current_organization_id)
            .first()
        )
        if membership:
            return membership.organization
    membership = (
        Membership.objects.select_related("organization__plan")
        .filter(user=user)
        .order_by("created_at")
        .first()
    )
    return membership.organization if membership else None


def membership_get(*, user: User, organization: Organization) -> Membership:
    """The user's membership of ``organization``, or 404: outsiders learn nothing."""
    try:
        return Membership.objects.select_related("organization__plan").get(
            user=user, organization=organization
        )
    except Membership.DoesNotExist:
        raise Http404("No such organisation.") from None


def organizations_for_user(*, user: User) -> list[Membership]:
    """The user's memberships, with their organisations, for the switcher."""
    return list(
        Membership.objects.select_related("organization__plan")
        .filter(user=user)
        .order_by("organization__name", "organization_id")
    )


def membership_list(*, organization: Organization) -> QuerySet[Membership]:
    return (
        Membership.objects.select_related("user")
        .filter(organization=organization)
        .order_by("user__email")
    )


def membership_get_in_organization(
    *, organization: Organization, user_public_id: str
) -> Membership:
    """A member of ``organization`` by the user's public id, or 404."""
    try:
        return Membership.objects.select_related("user", "organization__plan").get(
            organization=organization, user__public_id=user_public_id
        )
    except Membership.DoesNotExist:
        raise Http404("No such member.") from None


def invitation_list_pending(*, organization: Organization) -> QuerySet[Invitation]:
    return Invitation.objects.select_related("invited_by").filter(
        organization=organization,
        accepted_at__isnull=True,
        revoked_at__isnull=True,
        expires_at__gt=timezone.now(),
    )


def invitation_get_in_organization(*, organization: Organization, public_id: str) -> Invitation:
    try:
        return Invitation.objects.select_related("organization").get(
            organization=organization, public_id=public_id
        )
    except Invitation.DoesNotExist:
        raise Http404("No such invitation.") from None


def plan_list() -> list[Plan]:
    return list(Plan.objects.order_by("rank"))


def _limit_text(value: int | None, singular: str, plural: str) -> str:
    return f"unlimited {plural}" if value is None else counted(value, singular, plural)


def plan_change_effects(*, organization: Organization, plan: Plan) -> list[str]:
    """What stops working (or is limited) if ``organization`` moves to ``plan``.

    A downgrade deletes nothing. Agents, rules, keys, approval requests, webhook
    endpoints and their history stay. At use time, ``accounts.plans`` refuses what the
    new plan does not include:

    - approval workflows off: a rule whose effect is "require approval" acts as block (the
      tool call is refused with a reason naming the plan); requests already pending can
      still be decided or expire;
    - webhooks off: endpoints are kept (and can be edited) but no events are delivered;
    - multi-approver quorum off: a rule that asks for more than one approver acts as block;
    - agent limit: agents beyond the limit keep working, but creating one more is refused
      until the count is below the limit (same for rules per agent);
    - audit-log retention: the retention job keeps only the new plan's number of days;
    - API requests per minute: the lower rate applies at once (429 above it).
    """
    current = organization.plan
    effects: list[str] = []
    if current.approval_workflows and not plan.approval_workflows:
        effects.append(
            "Approval workflows stop: rules that require approval act as block "
            "(the tool call is refused)."
        )
    if current.webhooks and not plan.webhooks:
        count = organization.webhook_endpoints.count()
        kept = (
            f"; your {counted(count, 'endpoint is', 'endpoints are')} kept for later"
            if count
            else ""
        )
        effects.append(f"Webhooks stop being delivered{kept}.")
    if current.approval_quorum and not plan.approval_quorum:
        effects.append("Rules that need several approvers act as block.")
    if plan.max_agents is not None:
        agents = organization.agents.count()
        if agents > plan.max_agents:
            effects.append(
                f"You have {counted(agents, 'agent')}; all keep working, but no new agent can be "
                f"created beyond {plan.max_agents}."
            )
    if plan.max_rules_per_agent is not None and (
        current.max_rules_per_agent is None
        or plan.max_rules_per_agent < current.max_rules_per_agent
    ):
        effects.append(
            "New rules are refused on agents that already have "
            f"{counted(plan.max_rules_per_agent, 'rule')}."
        )
    if plan.audit_retention_days is not None and (
        current.audit_retention_days is None
        or plan.audit_retention_days < current.audit_retention_days
    ):
        effects.append(
            f"The audit log keeps {_limit_text(plan.audit_retention_days, 'day', 'days')} "
            "of history."
        )
    if plan.api_requests_per_minute is not None and (
        current.api_requests_per_minute is None
        or plan.api_requests_per_minute < current.api_requests_per_minute
    ):
        effects.append(
            f"The API allows {counted(plan.api_requests_per_minute, 'request')} per minute "
            "(429 above)."
        )
    return effects


def organization_overview(*, organization: Organization) -> dict[str, Any]:
    return {
        "member_count": organization.memberships.count(),
        "pending_invitations": invitation_list_pending(organization=organization).count(),
        "agent_count": organization.agents.count(),
    }


def organization_get_by_ref(*, ref: str) -> Organization:
    """The organisation with this public id or exact name, for operators' commands.

    A name that several organisations share is refused rather than guessed: a policy import
    or an export must never land on the wrong tenant.
    """
    from django.db.models import Q

    from wardenproject.errors import NotFound, ValidationFailed

    organizations = list(
        Organization.objects.select_related("plan").filter(Q(public_id=ref) | Q(name=ref))[:2]
    )
    if not organizations:
        raise NotFound(f"No organisation {ref!r} (give its public id or name).", field="org")
    if len(organizations) > 1:
        raise ValidationFailed(
            f"Several organisations are named {ref!r}; give the public id.", field="org"
        )
    return organizations[0]


def membership_get_by_email(*, organization: Organization, email: str) -> Membership | None:
    """The membership in ``organization`` of the user with this email address (any case),
    for operators' commands that act on a member's behalf (``--actor``)."""
    return (
        Membership.objects.select_related("user", "organization")
        .filter(organization=organization, user__email__iexact=email.strip())
        .first()
    )


def membership_is_last_owner(membership: Membership) -> bool:
    """True if ``membership`` is its organisation's only owner (who must stay one)."""
    return (
        membership.role == Membership.Role.OWNER
        and not Membership.objects.filter(
            organization_id=membership.organization_id, role=Membership.Role.OWNER
        )
        .exclude(pk=membership.pk)
        .exists()
    )


def membership_role_get(*, user: User, organization_id: int) -> str | None:
    """The user's role in the organisation, or None for outsiders."""
    # order_by(): one row at most, and the model's ordering would join the organisation.
    return (
        Membership.objects.filter(user=user, organization_id=organization_id)
        .order_by()
        .values_list("role", flat=True)
        .first()
    )


def membership_of_active_user_get(*, user_id: int, organization_id: int) -> Membership | None:
    """The membership of an active user in the organisation, with the user (one query), or
    None for outsiders and deactivated users."""
    return (
        Membership.objects.filter(
            user_id=user_id, user__is_active=True, organization_id=organization_id
        )
        .select_related("user")
        .order_by()
        .first()
    )


def group_list(*, organization: Organization) -> QuerySet[MemberGroup]:
    return (
        MemberGroup.objects.filter(organization=organization)
        .prefetch_related("members")
        .order_by("name")
    )


def group_get_in_organization(*, organization: Organization, public_id: str) -> MemberGroup:
    """A group of ``organization`` by its public id, or 404 (another organisation's too)."""
    try:
        return MemberGroup.objects.select_related("organization").get(
            organization=organization, public_id=public_id
        )
    except MemberGroup.DoesNotExist:
        raise Http404("No such group.") from None
