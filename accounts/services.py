"""Writes for accounts: organisations, memberships, invitations, plans and profiles.

Every service takes the acting user, checks the actor's role with
``accounts.permissions.membership_require`` (so API, pages and admin get the same answer),
runs in a transaction and writes an audit row for configuration changes.
"""

from __future__ import annotations

import functools
import logging
import re
import zoneinfo
from datetime import timedelta
from typing import Any

from allauth.account.models import EmailAddress
from allauth.core import ratelimit
from django.conf import settings
from django.core import signing
from django.core.exceptions import PermissionDenied
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from accounts.models import Invitation, MemberGroup, Membership, Organization, Plan, User
from accounts.permissions import (
    Capability,
    NotAMember,
    RoleForbidden,
    membership_can_manage,
    membership_require,
    operator_require,
    role_can_assign,
)
from accounts.plans import plan_self_serve
from agents.runtime import organization_forget
from agents.services import api_key_revoke_approver_keys_of
from audit.services import audit_record_change, audit_record_operator_change, model_snapshot
from wardenproject.errors import Conflict, DomainError, Forbidden, ValidationFailed
from wardenproject.ids import random_token

logger = logging.getLogger(__name__)

Role = Membership.Role
INVITATION_SALT = "warden.accounts.invitation"
MIN_APPROVAL_TIMEOUT_SECONDS = 60
MAX_APPROVAL_TIMEOUT_SECONDS = 7 * 24 * 3600


class LastOwnerError(Conflict):
    code = "last_owner"


class PlanChangeByOperator(Forbidden, PermissionDenied):
    """403 for pages and APIs alike: this service's plans are changed by its operator."""

    code = "plan_change_by_operator"


class InvitationInvalid(DomainError):
    """The invitation link cannot be used. ``code`` says why; ``detail`` says it to a human."""

    status = 410
    code = "invitation_invalid"


# --- Organisations ---------------------------------------------------------------------------


def _plan_default() -> Plan:
    return Plan.objects.get(slug=Plan.Slug.FREE)


@transaction.atomic
def organization_create(
    *,
    owner: User,
    name: str,
    plan: Plan | None = None,
    as_operator: bool = False,
    source: str = "web",
) -> Organization:
    """Create an organisation (Free plan unless given) with ``owner`` as its owner.

    The new organisation becomes the owner's current one if they had none. The audit entry
    names the owner, who signed up, or the system when the operator made it for them
    (``as_operator``: ``warden_bootstrap``).
    """
    name = name.strip()
    if not name:
        raise ValidationFailed("The organisation needs a name.", field="name")
    organization = Organization.objects.create(name=name, plan=plan or _plan_default())
    Membership.objects.create(user=owner, organization=organization, role=Role.OWNER)
    if owner.current_organization_id is None:
        owner.current_organization = organization
        owner.save(update_fields=["current_organization"])
    audit_record_change(
        organization=organization,
        actor_user=None if as_operator else owner,
        target=organization,
        verb="create",
        before=None,
        after=model_snapshot(organization, ["name", "plan"]),
        source=source,
    )
    return organization


@functools.cache
def available_time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


def organization_settings_clean(
    *, name: str, default_approval_timeout: int, time_zone: str | None
) -> str:
    """The organisation's settings checked (``ValidationFailed`` naming the field); returns
    the name stripped. The admin's form asks it too, so a bad value is a form error there."""
    name = name.strip()
    if not name:
        raise ValidationFailed("The organisation needs a name.", field="name")
    timeout_range = range(MIN_APPROVAL_TIMEOUT_SECONDS, MAX_APPROVAL_TIMEOUT_SECONDS + 1)
    if default_approval_timeout not in timeout_range:
        raise ValidationFailed(
            "The default approval timeout must be between 1 minute and 7 days.",
            field="default_approval_timeout",
        )
    if time_zone is not None and time_zone not in available_time_zones():
        raise ValidationFailed(
            f"Unknown time zone {time_zone!r}: use an IANA name such as Europe/Paris.",
            field="time_zone",
        )
    return name


@transaction.atomic
def organization_update(
    *,
    actor: User,
    organization: Organization,
    name: str,
    default_approval_timeout: int,
    time_zone: str | None = None,
    as_operator: bool = False,
    source: str = "web",
) -> Organization:
    """Rename the organisation, set its default approval timeout (seconds) and the time zone
    in which rules read ``$time.hour`` and ``$time.weekday``.

    ``as_operator``: staff in the Django admin, who need no membership."""
    if as_operator:
        operator_require(actor)
    else:
        membership_require(
            user=actor, organization=organization, capability=Capability.MANAGE_ORGANIZATION
        )
    name = organization_settings_clean(
        name=name, default_approval_timeout=default_approval_timeout, time_zone=time_zone
    )
    fields = ["name", "default_approval_timeout", "time_zone"]
    before = model_snapshot(organization, fields)
    organization.name = name
    organization.default_approval_timeout = default_approval_timeout
    if time_zone is not None:
        organization.time_zone = time_zone
    organization.save(update_fields=fields)
    # Checks read the organisation from cached keys: forget them, so rules see the change.
    from agents.runtime import organization_forget

    organization_id = organization.pk
    transaction.on_commit(lambda: organization_forget(organization_id))
    audit_record_change(
        organization=organization,
        actor_user=actor,
        target=organization,
        verb="update",
        before=before,
        after=model_snapshot(organization, fields),
        source=source,
    )
    return organization


@transaction.atomic
def organization_change_plan(
    *,
    actor: User | None,
    organization: Organization,
    plan: Plan,
    as_operator: bool = False,
    source: str = "web",
) -> Organization:
    """Move the organisation to ``plan``.

    Plan changes are the operator's: staff in the Django admin, or ``manage.py warden_org
    set-plan`` (``actor`` None), both with ``as_operator``. An owner may change the plan
    only when ``WARDEN_SELF_SERVE_PLANS`` is on (a self-hosted install); otherwise the
    answer is ``PlanChangeByOperator`` (403).

    A downgrade keeps every row (agents, rules, keys, approval requests, webhook
    endpoints, audit entries). What stops working is decided at use time by
    ``accounts.plans``; see ``accounts.selectors.plan_change_effects``.
    """
    if as_operator:
        if actor is not None and not actor.is_staff:
            raise PlanChangeByOperator("Only staff change plans from the admin.")
    else:
        membership_require(user=actor, organization=organization, capability=Capability.MANAGE_PLAN)
        if not plan_self_serve():
            raise PlanChangeByOperator(
                "Plan changes are made by the operator of this Warden service: ask them to "
                "move your organisation to another plan."
            )
    before = model_snapshot(organization, ["plan"])
    if organization.plan_id != plan.pk:
        organization.plan = plan
        organization.save(update_fields=["plan"])
        audit_record_change(
            organization=organization,
            actor_user=actor,
            target=organization,
            verb="change plan",
            before=before,
            after=model_snapshot(organization, ["plan"]),
            source=source,
        )
        # The check path caches keys with their organisation and plan. Drop them now and again
        # after commit, in case another thread reloaded the old plan in between.
        organization_id = organization.pk
        organization_forget(organization_id)
        transaction.on_commit(lambda: organization_forget(organization_id))
    return organization


# What staff may change of a plan; its slug is how code and commands name it.
PLAN_TERMS = (
    "name",
    "rank",
    "monthly_price_usd",
    "approval_workflows",
    "webhooks",
    "approval_quorum",
    "max_agents",
    "max_rules_per_agent",
    "audit_retention_days",
    "api_requests_per_minute",
)


def plan_update(*, actor: User | None, plan: Plan, source: str = "admin", **changes: Any) -> Plan:
    """Change a plan's terms (features, limits, price): the operator's, staff in the admin.

    The plan belongs to no organisation, so the change is recorded in the log of every
    organisation on the plan (``audit_record_operator_change``), with every term before and
    after; their cached plans are dropped as for a plan change.
    """
    operator_require(actor)
    unknown = set(changes) - set(PLAN_TERMS)
    if unknown:
        raise ValidationFailed(f"Unknown field {sorted(unknown)[0]!r}.", field=sorted(unknown)[0])
    with transaction.atomic():
        plan = Plan.objects.select_for_update().get(pk=plan.pk)
        before = model_snapshot(plan, list(PLAN_TERMS))
        for field, value in changes.items():
            setattr(plan, field, value)
        plan.save()
        plan.refresh_from_db()
        after = model_snapshot(plan, list(PLAN_TERMS))
        if after == before:
            return plan
        on_plan = Organization.objects.filter(plan=plan)
        audit_record_operator_change(
            organizations=on_plan,
            actor_user=actor,
            target=plan,
            target_id=plan.slug,
            verb="updated",
            before=before,
            after=after,
            source=source,
        )
        organization_ids = list(on_plan.values_list("pk", flat=True))

        def forget() -> None:
            for organization_id in organization_ids:
                organization_forget(organization_id)

        forget()
        transaction.on_commit(forget)
    return plan


def organization_delete(*, organization: Organization) -> None:
    """Delete an organisation and everything it owns, its audit log included.

    The audit log is append-only (on PostgreSQL a trigger refuses deletes), so this opens the
    one window in which its rows may go: the tenant itself is leaving.
    """
    from audit.services import audit_purge_allowed

    with audit_purge_allowed():
        User.objects.filter(current_organization=organization).update(current_organization=None)
        organization.delete()


def user_switch_organization(*, user: User, organization_public_id: str) -> Organization:
    """Make the organisation the user's current one. Non-members get 404."""
    membership = Membership.objects.select_related("organization").filter(
        user=user, organization__public_id=organization_public_id
    )
    found = membership.first()
    if found is None:
        raise NotAMember("No such organisation.")
    user.current_organization = found.organization
    user.save(update_fields=["current_organization"])
    return found.organization


# --- Memberships -----------------------------------------------------------------------------


def _other_owners_exist(membership: Membership) -> bool:
    return (
        Membership.objects.filter(organization_id=membership.organization_id, role=Role.OWNER)
        .exclude(pk=membership.pk)
        .exists()
    )


def _lock_owners(organization_id: int) -> None:
    # Serialise concurrent demotions/removals of owners in the same organisation so two
    # owners cannot demote each other at the same moment and leave none.
    list(
        Membership.objects.select_for_update()
        .filter(organization_id=organization_id, role=Role.OWNER)
        .values_list("pk", flat=True)
    )


@transaction.atomic
def membership_change_role(
    *,
    actor: User | None,
    membership: Membership,
    role: str,
    as_operator: bool = False,
    source: str = "web",
) -> Membership:
    """``as_operator``: staff in the Django admin; the last owner stays an owner either way."""
    if role not in Role.values:
        raise ValidationFailed(f"Unknown role {role!r}.", field="role")
    if as_operator:
        operator_require(actor)
    else:
        acting = membership_require(
            user=actor, organization=membership.organization, capability=Capability.MANAGE_MEMBERS
        )
        if not membership_can_manage(acting, membership) or not role_can_assign(acting.role, role):
            raise RoleForbidden("Only an owner can change an owner or make someone an owner.")
    _lock_owners(membership.organization_id)
    membership.refresh_from_db()
    if membership.role == role:
        return membership
    if membership.role == Role.OWNER and not _other_owners_exist(membership):
        raise LastOwnerError(
            "An organisation needs at least one owner: make someone else an owner first.",
            field="role",
        )
    before = model_snapshot(membership, ["user", "role"])
    membership.role = role
    membership.save(update_fields=["role"])
    audit_record_change(
        organization=membership.organization,
        actor_user=actor,
        target=membership,
        verb="change role",
        before=before,
        after=model_snapshot(membership, ["user", "role"]),
        source=source,
    )
    return membership


@transaction.atomic
def membership_remove(
    *, actor: User | None, membership: Membership, as_operator: bool = False, source: str = "web"
) -> None:
    """Remove a member. Anyone may leave; managing others needs ``manage_members``
    (``as_operator``: staff in the Django admin). The last owner is never removed.

    The approver keys the member created vote as them, so they are revoked with the
    membership (audited; refused at once in this process, within the key cache's lifetime
    elsewhere). Agent and organisation keys belong to the organisation and stay.
    """
    leaving = actor is not None and membership.user_id == actor.pk
    if as_operator:
        operator_require(actor)
    elif leaving:
        membership_require(user=actor, organization=membership.organization)
    else:
        acting = membership_require(
            user=actor,
            organization=membership.organization,
            capability=Capability.MANAGE_MEMBERS,
        )
        if not membership_can_manage(acting, membership):
            raise RoleForbidden("Only an owner can remove an owner.")
    _lock_owners(membership.organization_id)
    membership.refresh_from_db()
    if membership.role == Role.OWNER and not _other_owners_exist(membership):
        raise LastOwnerError("The last owner cannot be removed: make someone else an owner first.")
    audit_record_change(
        organization=membership.organization,
        actor_user=actor,
        target=membership,
        verb="remove",
        before=model_snapshot(membership, ["user", "role"]),
        after=None,
        source=source,
    )
    user = membership.user
    api_key_revoke_approver_keys_of(
        organization=membership.organization, user=user, actor=actor, source=source
    )
    # A member who comes back later does not find their old groups again.
    user.member_groups.remove(*MemberGroup.objects.filter(organization=membership.organization_id))
    membership.delete()
    if user.current_organization_id == membership.organization_id:
        user.current_organization = None
        user.save(update_fields=["current_organization"])


# --- Invitations -----------------------------------------------------------------------------


def invitation_token(invitation: Invitation) -> str:
    """The signed token in the invitation link (over the public id; expiry is in it)."""
    return signing.dumps(invitation.public_id, salt=INVITATION_SALT, compress=False)


def invitation_url(invitation: Invitation) -> str:
    path = reverse("invitation_accept", kwargs={"token": invitation_token(invitation)})
    return f"{settings.WARDEN_BASE_URL}{path}"


def _invitation_send(invitation_id: int) -> None:
    invitation = Invitation.objects.select_related("organization", "invited_by").get(
        pk=invitation_id
    )
    context = {
        "invitation": invitation,
        "url": invitation_url(invitation),
        "organization": invitation.organization,
        "inviter": invitation.invited_by,
        "role": Role(invitation.role).label,
        "expires_at": invitation.expires_at,
    }
    subject = render_to_string("accounts/email/invitation_subject.txt", context).strip()
    body = render_to_string("accounts/email/invitation_message.txt", context)
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [invitation.email])


@transaction.atomic
def invitation_create(
    *, actor: User, organization: Organization, email: str, role: str
) -> Invitation:
    """Invite ``email`` with ``role``; the email goes out after commit.

    A pending invitation for the same address is revoked and replaced (a re-send).
    """
    acting = membership_require(
        user=actor, organization=organization, capability=Capability.MANAGE_MEMBERS
    )
    email = User.objects.normalize_email(email.strip()).lower()
    if not email or "@" not in email:
        raise ValidationFailed("Enter a valid email address.", field="email")
    if role not in Role.values:
        raise ValidationFailed(f"Unknown role {role!r}.", field="role")
    if not role_can_assign(acting.role, role):
        raise RoleForbidden("Only an owner can invite another owner.")
    if Membership.objects.filter(organization=organization, user__email__iexact=email).exists():
        raise Conflict(f"{email} is already a member of {organization.name}.", field="email")
    now = timezone.now()
    Invitation.objects.filter(
        organization=organization,
        email__iexact=email,
        accepted_at__isnull=True,
        revoked_at__isnull=True,
    ).update(revoked_at=now)
    invitation = Invitation.objects.create(
        organization=organization,
        email=email,
        role=role,
        invited_by=actor,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.INVITATION_MAX_AGE_SECONDS),
    )
    audit_record_change(
        organization=organization,
        actor_user=actor,
        target=invitation,
        verb="invite",
        before=None,
        after=model_snapshot(invitation, ["email", "role", "expires_at"]),
        source="web",
    )
    invitation_id = invitation.pk
    transaction.on_commit(lambda: _invitation_send(invitation_id))
    return invitation


@transaction.atomic
def invitation_revoke(
    *, actor: User | None, invitation: Invitation, as_operator: bool = False, source: str = "web"
) -> Invitation:
    """``as_operator``: staff in the Django admin."""
    if as_operator:
        operator_require(actor)
    else:
        acting = membership_require(
            user=actor, organization=invitation.organization, capability=Capability.MANAGE_MEMBERS
        )
        if not role_can_assign(acting.role, invitation.role):
            raise RoleForbidden("Only an owner can revoke an invitation to become an owner.")
    updated = Invitation.objects.filter(
        pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True
    ).update(revoked_at=timezone.now())
    if not updated:
        raise Conflict("This invitation was already accepted or revoked.")
    invitation.refresh_from_db()
    audit_record_change(
        organization=invitation.organization,
        actor_user=actor,
        target=invitation,
        verb="revoke",
        before={"email": invitation.email, "role": invitation.role},
        after=None,
        source=source,
    )
    return invitation


def invitation_check(invitation: Invitation) -> None:
    """Raise ``InvitationInvalid`` unless the invitation can still be accepted."""
    if invitation.revoked_at is not None:
        raise InvitationInvalid(
            "This invitation was revoked. Ask for a new one.", code="invitation_revoked"
        )
    if invitation.accepted_at is not None:
        raise InvitationInvalid(
            "This invitation link was already used. Each link works once.",
            code="invitation_used",
        )
    if invitation.expires_at <= timezone.now():
        raise InvitationInvalid(
            "This invitation link has expired. Ask for a new one.", code="invitation_expired"
        )


def invitation_from_token(token: str) -> Invitation:
    """The invitation a link's token names, if the link is genuine, unexpired and unused."""
    try:
        public_id = signing.loads(
            token, salt=INVITATION_SALT, max_age=settings.INVITATION_MAX_AGE_SECONDS
        )
    except signing.SignatureExpired:
        raise InvitationInvalid(
            "This invitation link has expired. Ask for a new one.", code="invitation_expired"
        ) from None
    except signing.BadSignature:
        raise InvitationInvalid(
            "This invitation link is not valid. Check that you copied all of it.",
            code="invitation_invalid",
            status=404,
        ) from None
    invitation = (
        Invitation.objects.select_related("organization", "invited_by")
        .filter(public_id=public_id)
        .first()
    )
    if invitation is None:
        raise InvitationInvalid(
            "This invitation no longer exists.", code="invitation_invalid", status=404
        )
    invitation_check(invitation)
    return invitation


@transaction.atomic
def invitation_accept(*, user: User, invitation: Invitation) -> Membership:
    """Join the organisation. Single use: a conditional UPDATE claims the invitation."""
    invitation_check(invitation)
    if invitation.email.lower() != user.email.lower():
        raise Forbidden(
            f"This invitation is for {invitation.email}, but you are logged in as "
            f"{user.email}. Log out and sign in (or sign up) with {invitation.email}.",
            code="invitation_email_mismatch",
        )
    now = timezone.now()
    claimed = Invitation.objects.filter(
        pk=invitation.pk,
        accepted_at__isnull=True,
        revoked_at__isnull=True,
        expires_at__gt=now,
    ).update(accepted_at=now, accepted_by=user)
    if claimed != 1:
        invitation.refresh_from_db()
        invitation_check(invitation)
        raise InvitationInvalid("This invitation can no longer be used.")
    membership = Membership.objects.filter(user=user, organization=invitation.organization).first()
    if membership is None:
        try:
            with transaction.atomic():
                membership = Membership.objects.create(
                    user=user, organization=invitation.organization, role=invitation.role
                )
        except IntegrityError:
            membership = Membership.objects.get(user=user, organization=invitation.organization)
        audit_record_change(
            organization=invitation.organization,
            actor_user=user,
            target=membership,
            verb="join",
            before=None,
            after={**model_snapshot(membership, ["user", "role"]), "via": invitation.public_id},
            source="web",
        )
    user.current_organization = invitation.organization
    user.save(update_fields=["current_organization"])
    return membership


# --- Profile ---------------------------------------------------------------------------------


def user_update_profile(*, user: User, name: str, notify_approvals: bool) -> User:
    user.name = name.strip()[:150]
    user.notify_approvals = notify_approvals
    user.save(update_fields=["name", "notify_approvals"])
    return user


# --- Bootstrap -------------------------------------------------------------------------------


@transaction.atomic
def organization_bootstrap(
    *, org_name: str, email: str, password: str | None, plan: Plan | None
) -> dict[str, Any]:
    """Idempotently ensure a user (verified email), an organisation and the owner membership.

    Returns the objects and what was made: ``{"user", "organization", "password",
    "created": {"user", "organization", "membership"}}``. ``password`` is the one given,
    or a generated one when the user is created without one; ``None`` otherwise.
    """
    from allauth.account.models import EmailAddress

    email = User.objects.normalize_email(email.strip()).lower()
    created = {"user": False, "organization": False, "membership": False}
    user = User.objects.filter(email__iexact=email).first()
    if user is None:
        if password is None:
            password = random_token(20)
        user = User.objects.create_user(email=email, password=password)
        created["user"] = True
    elif password is not None:
        user.set_password(password)
        user.save(update_fields=["password"])
    EmailAddress.objects.filter(user=user).exclude(email__iexact=email).update(primary=False)
    EmailAddress.objects.update_or_create(
        user=user, email=email, defaults={"verified": True, "primary": True}
    )

    organization = (
        Organization.objects.filter(name=org_name, memberships__user=user)
        .order_by("created_at")
        .first()
        or Organization.objects.filter(name=org_name).order_by("created_at").first()
    )
    if organization is None:
        organization = organization_create(
            owner=user, name=org_name, plan=plan, as_operator=True, source="bootstrap"
        )
        created["organization"] = created["membership"] = True
    else:
        # The operator's changes, audited as the system's (source bootstrap): the owner
        # being ensured is not the person running the command.
        membership, made = Membership.objects.get_or_create(
            user=user, organization=organization, defaults={"role": Role.OWNER}
        )
        created["membership"] = made
        before = None if made else model_snapshot(membership, ["user", "role"])
        if membership.role != Role.OWNER:
            membership.role = Role.OWNER
            membership.save(update_fields=["role"])
        if made or membership.role != (before or {}).get("role"):
            audit_record_change(
                organization=organization,
                actor_user=None,
                target=membership,
                verb="join" if made else "change role",
                before=before,
                after=model_snapshot(membership, ["user", "role"]),
                source="bootstrap",
            )
        if plan is not None:
            organization_change_plan(
                actor=None,
                organization=organization,
                plan=plan,
                as_operator=True,
                source="bootstrap",
            )
    if user.current_organization_id is None:
        user.current_organization = organization
        user.save(update_fields=["current_organization"])
    return {"user": user, "organization": organization, "password": password, "created": created}


def email_verification_resend(*, request: HttpRequest, email: str) -> bool:
    """Send a new verification link to ``email`` if an account has it and it is unverified.

    The page that calls this answers the same whatever happened (no account enumeration).
    At most one email per address per window (allauth's ``confirm_email`` rate limit, shared
    with the email allauth sends at log-in). Writes nothing: the link is signed (allauth's
    HMAC confirmations), so an older link keeps working. Returns whether an email went out.
    """
    address = (
        EmailAddress.objects.filter(email__iexact=email.strip(), verified=False)
        .exclude(user__isnull=True)
        .select_related("user")
        .first()
    )
    if address is None or not address.user.is_active:
        return False
    if not ratelimit.consume(request, action="confirm_email", key=address.email.lower()):
        return False
    address.send_confirmation(request)
    return True


# --- Groups (approver routing: ``group:NAME`` in a rule's approvers) ---------------------------

GROUP_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _group_snapshot(group: MemberGroup) -> dict[str, Any]:
    return {
        "name": group.name,
        "members": sorted(group.members.values_list("email", flat=True)),
    }


def _group_manager_require(actor: User | None, organization: Organization) -> Membership:
    return membership_require(
        user=actor, organization=organization, capability=Capability.MANAGE_MEMBERS
    )


@transaction.atomic
def group_create(
    *, actor: User, organization: Organization, name: str, source: str = "web"
) -> MemberGroup:
    """A new, empty group. Owners and admins only; names are unique in the organisation
    whatever their case."""
    _group_manager_require(actor, organization)
    name = (name or "").strip()
    if not GROUP_NAME_RE.fullmatch(name):
        raise ValidationFailed(
            "A group name is 1 to 64 letters, digits, '-', '_' or '.', starting with a letter "
            "or digit (rules name it as group:NAME).",
            field="name",
        )
    if MemberGroup.objects.filter(organization=organization, name__iexact=name).exists():
        raise Conflict(f"There is already a group named {name}.", field="name")
    try:
        with transaction.atomic():
            group = MemberGroup.objects.create(organization=organization, name=name)
    except IntegrityError:
        raise Conflict(f"There is already a group named {name}.", field="name") from None
    audit_record_change(
        organization=organization,
        actor_user=actor,
        target=group,
        verb="create",
        before=None,
        after=_group_snapshot(group),
        source=source,
    )
    return group


def _group_members_change(
    *, actor: User, group: MemberGroup, user: User, add: bool, source: str
) -> MemberGroup:
    _group_manager_require(actor, group.organization)
    if (
        add
        and not Membership.objects.filter(organization_id=group.organization_id, user=user).exists()
    ):
        raise NotAMember("No such member.")
    locked = MemberGroup.objects.select_for_update().get(pk=group.pk)
    before = _group_snapshot(locked)
    is_member = locked.members.filter(pk=user.pk).exists()
    if add == is_member:
        return locked
    if add:
        locked.members.add(user)
    else:
        locked.members.remove(user)
    audit_record_change(
        organization=group.organization,
        actor_user=actor,
        target=locked,
        verb="add member" if add else "remove member",
        before=before,
        after=_group_snapshot(locked),
        source=source,
    )
    return locked


@transaction.atomic
def group_member_add(
    *, actor: User, group: MemberGroup, user: User, source: str = "web"
) -> MemberGroup:
    """Put a member of the group's organisation in it (anyone else: 404)."""
    return _group_members_change(actor=actor, group=group, user=user, add=True, source=source)


@transaction.atomic
def group_member_remove(
    *, actor: User, group: MemberGroup, user: User, source: str = "web"
) -> MemberGroup:
    return _group_members_change(actor=actor, group=group, user=user, add=False, source=source)


@transaction.atomic
def group_delete(*, actor: User, group: MemberGroup, source: str = "web") -> None:
    """Delete a group. Rules that name it then admit nobody through it (routing fails
    closed) and their pages warn about the unknown group."""
    _group_manager_require(actor, group.organization)
    audit_record_change(
        organization=group.organization,
        actor_user=actor,
        target=group,
        verb="delete",
        before=_group_snapshot(group),
        after=None,
        source=source,
    )
    group.delete()
