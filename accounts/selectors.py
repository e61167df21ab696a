from __future__ import annotations

from django.http import Http404

from accounts.models import Membership, Organization, User


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
