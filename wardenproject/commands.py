"""Helpers shared by the management commands (interfaces: parse input, call a selector)."""

from __future__ import annotations

from django.core.management.base import CommandError, CommandParser

from accounts.models import Organization, User
from accounts.permissions import CAPABILITY_LABELS, Capability, role_has
from accounts.selectors import membership_get_by_email, organization_get_by_ref
from wardenproject.errors import DomainError

ACTOR_HELP = (
    "Email address of the member on whose behalf this runs: the audit log names them as the "
    "actor. They must be a member allowed to make the change. Without it the entry names "
    "the system."
)


def organization_from(ref: str) -> Organization:
    """``--org ORG``: a public id or an exact, unambiguous name; CommandError otherwise."""
    try:
        return organization_get_by_ref(ref=ref)
    except DomainError as exc:
        raise CommandError(exc.detail) from None


def actor_argument(parser: CommandParser) -> None:
    parser.add_argument("--actor", metavar="EMAIL", help=ACTOR_HELP)


def actor_from(
    email: str | None, *, organization: Organization, capability: Capability
) -> User | None:
    """``--actor EMAIL``: the member the audit log names, who must be allowed to make the
    change through the API too (a change is never attributed to someone who could not make
    it). None without the option: the entry then names the system."""
    if email is None:
        return None
    if not email.strip():
        raise CommandError("--actor must be an email address.")
    membership = membership_get_by_email(organization=organization, email=email)
    if membership is None or not membership.user.is_active:
        raise CommandError(f"--actor {email}: no active member of {organization.name} has it.")
    if not role_has(membership.role, capability):
        raise CommandError(
            f"--actor {email}: a {membership.get_role_display().lower()} of "
            f"{organization.name} may not {CAPABILITY_LABELS[capability]}."
        )
    return membership.user
