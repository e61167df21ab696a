"""Pages for accounts: dashboard, switcher, members, invitations, plan, settings, profile.

Views parse input, call one service or selector and render. Every page that takes an
organisation id answers 404 to non-members (``membership_require_by_public_id``).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import selectors, services
from accounts.forms import (
    PENDING_INVITATION_SESSION_KEY,
    InvitationForm,
    OrganizationSettingsForm,
    ProfileForm,
    RoleForm,
    VerificationResendForm,
)
from accounts.models import Membership, Plan
from accounts.permissions import (
    Capability,
    membership_can_manage,
    membership_has,
    membership_require_by_public_id,
    roles_assignable_by,
)
from accounts.plans import (
    FEATURE_LABELS,
    Feature,
    plan_allows,
    plan_required_message,
    plan_self_serve,
)
from approvals.slack import slack_links_for_user
from audit.insights.views import bad_filter_response, overview_context
from wardenproject.errors import DomainError, ValidationFailed


def _reraise_access_errors(exc: DomainError) -> None:
    # 404/403 keep their status on pages; other domain errors become visible messages.
    if isinstance(exc, Http404 | PermissionDenied):
        raise exc


def _redirect_back(request: HttpRequest, fallback: str) -> HttpResponse:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect(fallback)


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    organization = request.organization
    if not organization:
        return render(request, "accounts/no_organization.html", {})
    membership = membership_require_by_public_id(
        user=request.user, organization_public_id=organization.public_id
    )
    locked = [
        plan_required_message(organization, feature)
        for feature in Feature
        if not plan_allows(organization, feature)
    ]
    features = [(FEATURE_LABELS[f], plan_allows(organization, f)) for f in Feature]
    try:
        insights = overview_context(request, organization)
    except ValidationFailed as exc:
        return bad_filter_response(request, exc)
    return render(
        request,
        "accounts/dashboard.html",
        {
            "organization": organization,
            "membership": membership,
            "overview": selectors.organization_overview(organization=organization),
            "insights": insights,
            "features": features,
            "locked_features": locked,
            "can_manage_members": membership_has(membership, Capability.MANAGE_MEMBERS),
            "can_manage_plan": plan_self_serve()
            and membership_has(membership, Capability.MANAGE_PLAN),
            "can_manage_organization": membership_has(membership, Capability.MANAGE_ORGANIZATION),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def organization_new(request: HttpRequest) -> HttpResponse:
    error = ""
    if request.method == "POST":
        try:
            organization = services.organization_create(
                owner=request.user, name=request.POST.get("name", "")
            )
        except DomainError as exc:
            error = exc.detail
        else:
            services.user_switch_organization(
                user=request.user, organization_public_id=organization.public_id
            )
            messages.success(request, f"{organization.name} is ready, on the Free plan.")
            return redirect("dashboard")
    return render(request, "accounts/organization_new.html", {"error": error})


@login_required
@require_POST
def organization_switch(request: HttpRequest) -> HttpResponse:
    organization = services.user_switch_organization(
        user=request.user, organization_public_id=request.POST.get("organization", "")
    )
    messages.success(request, f"You are now working in {organization.name}.")
    return _redirect_back(request, reverse("dashboard"))


# --- Members and invitations -----------------------------------------------------------------


@login_required
def members(request: HttpRequest, org_id: str) -> HttpResponse:
    membership = membership_require_by_public_id(user=request.user, organization_public_id=org_id)
    organization = membership.organization
    can_manage = membership_has(membership, Capability.MANAGE_MEMBERS)
    assignable = roles_assignable_by(membership.role)
    rows = [
        {
            "membership": m,
            "manageable": membership_can_manage(membership, m),
            "is_me": m.user_id == request.user.pk,
        }
        for m in selectors.membership_list(organization=organization)
    ]
    return render(
        request,
        "accounts/members.html",
        {
            "organization": organization,
            "membership": membership,
            "rows": rows,
            "can_manage": can_manage,
            "assignable_roles": [(r, Membership.Role(r).label) for r in assignable],
            "invitations": selectors.invitation_list_pending(organization=organization)
            if can_manage
            else [],
            "invitation_form": InvitationForm(roles=assignable),
        },
    )


# --- Groups (approver routing) ----------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def groups(request: HttpRequest, org_id: str) -> HttpResponse:
    """The organisation's groups (every member sees them; owners and admins create)."""
    membership = membership_require_by_public_id(user=request.user, organization_public_id=org_id)
    organization = membership.organization
    if request.method == "POST":
        try:
            group = services.group_create(
                actor=request.user, organization=organization, name=request.POST.get("name", "")
            )
        except DomainError as exc:
            _reraise_access_errors(exc)
            messages.error(request, exc.detail)
        else:
            messages.success(request, f"Group {group.name} created; add its members.")
            return redirect("group_detail", org_id=org_id, group_id=group.public_id)
        return redirect("groups", org_id=org_id)
    return render(
        request,
        "accounts/groups.html",
        {
            "organization": organization,
            "membership": membership,
            "groups": selectors.group_list(organization=organization),
            "can_manage": membership_has(membership, Capability.MANAGE_MEMBERS),
        },
    )


@login_required
@require_GET
def group_detail(request: HttpRequest, org_id: str, group_id: str) -> HttpResponse:
    membership = membership_require_by_public_id(user=request.user, organization_public_id=org_id)
    organization = membership.organization
    group = selectors.group_get_in_organization(organization=organization, public_id=group_id)
    members = list(group.members.order_by("email"))
    in_group = {user.pk for user in members}
    return render(
        request,
        "accounts/group_detail.html",
        {
            "organization": organization,
            "group": group,
            "members": members,
            "candidates": [
                m.user
                for m in selectors.membership_list(organization=organization)
                if m.user_id not in in_group
            ],
            "can_manage": membership_has(membership, Capability.MANAGE_MEMBERS),
        },
    )


def _group_for_change(request: HttpRequest, org_id: str, group_id: str) -> Any:
    acting = membership_require_by_public_id(
        user=request.user, organization_public_id=org_id, capability=Capability.MANAGE_MEMBERS
    )
    return selectors.group_get_in_organization(organization=acting.organization, public_id=group_id)


@login_required
@require_POST
def group_member_add(request: HttpRequest, org_id: str, group_id: str) -> HttpResponse:
    group = _group_for_change(request, org_id, group_id)
    target = selectors.membership_get_in_organization(
        organization=group.organization, user_public_id=request.POST.get("user", "")
    )
    services.group_member_add(actor=request.user, group=group, user=target.user)
    messages.success(request, f"{target.user.email} is now in {group.name}.")
    return redirect("group_detail", org_id=org_id, group_id=group_id)


@login_required
@require_POST
def group_member_remove(
    request: HttpRequest, org_id: str, group_id: str, user_id: str
) -> HttpResponse:
    group = _group_for_change(request, org_id, group_id)
    user = get_object_or_404(group.members, public_id=user_id)
    services.group_member_remove(actor=request.user, group=group, user=user)
    messages.success(request, f"{user.email} left {group.name}.")
    return redirect("group_detail", org_id=org_id, group_id=group_id)


@login_required
@require_POST
def group_delete(request: HttpRequest, org_id: str, group_id: str) -> HttpResponse:
    group = _group_for_change(request, org_id, group_id)
    services.group_delete(actor=request.user, group=group)
    messages.success(
        request,
        f"Group {group.name} deleted. Rules that route approvals to group:{group.name} now "
        "admit nobody through it.",
    )
    return redirect("groups", org_id=org_id)


@login_required
@require_POST
def member_role(request: HttpRequest, org_id: str, user_id: str) -> HttpResponse:
    acting = membership_require_by_public_id(user=request.user, organization_public_id=org_id)
    target = selectors.membership_get_in_organization(
        organization=acting.organization, user_public_id=user_id
    )
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a valid role.")
    else:
        try:
            services.membership_change_role(
                actor=request.user, membership=target, role=form.cleaned_data["role"]
            )
        except DomainError as exc:
            _reraise_access_errors(exc)
            messages.error(request, exc.detail)
        else:
            messages.success(
                request, f"{target.user.email} is now {Membership.Role(target.role).label}."
            )
    return redirect("members", org_id=org_id)


@login_required
@require_POST
def member_remove(request: HttpRequest, org_id: str, user_id: str) -> HttpResponse:
    acting = membership_require_by_public_id(user=request.user, organization_public_id=org_id)
    target = selectors.membership_get_in_organization(
        organization=acting.organization, user_public_id=user_id
    )
    try:
        services.membership_remove(actor=request.user, membership=target)
    except DomainError as exc:
        _reraise_access_errors(exc)
        messages.error(request, exc.detail)
        return redirect("members", org_id=org_id)
    if target.user_id == request.user.pk:
        messages.success(request, f"You left {acting.organization.name}.")
        return redirect("dashboard")
    messages.success(request, f"{target.user.email} was removed from {acting.organization.name}.")
    return redirect("members", org_id=org_id)


@login_required
@require_POST
def invitation_create(request: HttpRequest, org_id: str) -> HttpResponse:
    acting = membership_require_by_public_id(
        user=request.user, organization_public_id=org_id, capability=Capability.MANAGE_MEMBERS
    )
    form = InvitationForm(request.POST, roles=roles_assignable_by(acting.role))
    if not form.is_valid():
        for errors in form.errors.values():
            messages.error(request, " ".join(errors))
        return redirect("members", org_id=org_id)
    try:
        invitation = services.invitation_create(
            actor=request.user,
            organization=acting.organization,
            email=form.cleaned_data["email"],
            role=form.cleaned_data["role"],
        )
    except DomainError as exc:
        _reraise_access_errors(exc)
        messages.error(request, exc.detail)
    else:
        messages.success(
            request,
            f"Invitation sent to {invitation.email} as {Membership.Role(invitation.role).label}.",
        )
    return redirect("members", org_id=org_id)


@login_required
@require_POST
def invitation_revoke(request: HttpRequest, org_id: str, invitation_id: str) -> HttpResponse:
    acting = membership_require_by_public_id(
        user=request.user, organization_public_id=org_id, capability=Capability.MANAGE_MEMBERS
    )
    invitation = selectors.invitation_get_in_organization(
        organization=acting.organization, public_id=invitation_id
    )
    try:
        services.invitation_revoke(actor=request.user, invitation=invitation)
    except DomainError as exc:
        _reraise_access_errors(exc)
        messages.error(request, exc.detail)
    else:
        messages.success(request, f"The invitation for {invitation.email} was revoked.")
    return redirect("members", org_id=org_id)


@require_http_methods(["GET", "POST"])
def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """The link in the invitation email.

    Anonymous visitors: the invitation is remembered in the session and they choose to
    sign up or log in; the account adapter brings them back here afterwards.
    """
    try:
        invitation = services.invitation_from_token(token)
    except services.InvitationInvalid as exc:
        request.session.pop(PENDING_INVITATION_SESSION_KEY, None)
        return render(
            request, "accounts/invitation_invalid.html", {"error": exc.detail}, status=exc.status
        )
    context = {"invitation": invitation, "role": Membership.Role(invitation.role).label}
    if not request.user.is_authenticated:
        request.session[PENDING_INVITATION_SESSION_KEY] = token
        return render(request, "accounts/invitation_accept.html", context)
    if invitation.email.lower() != request.user.email.lower():
        context["error"] = (
            f"This invitation is for {invitation.email}, but you are logged in as "
            f"{request.user.email}. Log out, then open the link again and sign in (or sign "
            f"up) as {invitation.email}."
        )
        request.session[PENDING_INVITATION_SESSION_KEY] = token
        return render(
            request, "accounts/invitation_accept.html", context, status=HTTPStatus.FORBIDDEN
        )
    if request.method == "GET":
        return render(request, "accounts/invitation_accept.html", context)
    try:
        services.invitation_accept(user=request.user, invitation=invitation)
    except DomainError as exc:
        request.session.pop(PENDING_INVITATION_SESSION_KEY, None)
        return render(
            request, "accounts/invitation_invalid.html", {"error": exc.detail}, status=exc.status
        )
    request.session.pop(PENDING_INVITATION_SESSION_KEY, None)
    messages.success(
        request, f"Welcome to {invitation.organization.name}. You joined as {context['role']}."
    )
    return redirect("dashboard")


# --- Plan, settings, profile -----------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def organization_plan(request: HttpRequest, org_id: str) -> HttpResponse:
    membership = membership_require_by_public_id(user=request.user, organization_public_id=org_id)
    organization = membership.organization
    if request.method == "POST":
        membership = membership_require_by_public_id(
            user=request.user, organization_public_id=org_id, capability=Capability.MANAGE_PLAN
        )
        plan = Plan.objects.filter(slug=request.POST.get("plan", "")).first()
        if plan is None:
            messages.error(request, "Choose one of the plans below.")
            return redirect("organization_plan", org_id=org_id)
        effects = selectors.plan_change_effects(organization=organization, plan=plan)
        services.organization_change_plan(actor=request.user, organization=organization, plan=plan)
        messages.success(request, f"{organization.name} is now on the {plan.name} plan.")
        for effect in effects:
            messages.warning(request, effect)
        return redirect("organization_plan", org_id=org_id)
    plans = [
        {
            "plan": plan,
            "current": plan.pk == organization.plan_id,
            "downgrade": plan.rank < organization.plan.rank,
            "effects": selectors.plan_change_effects(organization=organization, plan=plan)
            if plan.rank < organization.plan.rank
            else [],
        }
        for plan in selectors.plan_list()
    ]
    return render(
        request,
        "accounts/plan.html",
        {
            "organization": organization,
            "membership": membership,
            "plans": plans,
            "self_serve": plan_self_serve(),
            "can_change": plan_self_serve() and membership_has(membership, Capability.MANAGE_PLAN),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def organization_settings(request: HttpRequest, org_id: str) -> HttpResponse:
    membership = membership_require_by_public_id(
        user=request.user,
        organization_public_id=org_id,
        capability=Capability.MANAGE_ORGANIZATION,
    )
    organization = membership.organization
    if request.method == "POST":
        form = OrganizationSettingsForm(request.POST)
        if form.is_valid():
            try:
                services.organization_update(
                    actor=request.user,
                    organization=organization,
                    name=form.cleaned_data["name"],
                    default_approval_timeout=form.cleaned_data["default_approval_timeout_minutes"]
                    * 60,
                    time_zone=form.cleaned_data["time_zone"] or None,
                )
            except DomainError as exc:
                _reraise_access_errors(exc)
                form.add_error(None, exc.detail)
            else:
                messages.success(request, "Organisation settings saved.")
                return redirect("organization_settings", org_id=org_id)
    else:
        form = OrganizationSettingsForm(
            initial={
                "name": organization.name,
                "default_approval_timeout_minutes": organization.default_approval_timeout // 60,
                "time_zone": organization.time_zone,
            }
        )
    return render(request, "accounts/settings.html", {"organization": organization, "form": form})


@login_required
@require_http_methods(["GET", "POST"])
def profile(request: HttpRequest) -> HttpResponse:
    user = request.user
    if request.method == "POST":
        form = ProfileForm(request.POST)
        if form.is_valid():
            services.user_update_profile(
                user=user,
                name=form.cleaned_data["name"],
                notify_approvals=form.cleaned_data["notify_approvals"],
            )
            messages.success(request, "Profile saved.")
            return redirect("profile")
    else:
        form = ProfileForm(initial={"name": user.name, "notify_approvals": user.notify_approvals})
    return render(
        request,
        "accounts/profile.html",
        {
            "form": form,
            "memberships": selectors.organizations_for_user(user=user),
            "slack_links": slack_links_for_user(user=user),
        },
    )


@require_http_methods(["GET", "POST"])
def verification_resend(request: HttpRequest) -> HttpResponse:
    """Send the verification email again, for someone who cannot log in until they verify."""
    form = VerificationResendForm(request.POST or None, initial={"email": request.GET.get("email")})
    if request.method == "POST" and form.is_valid():
        services.email_verification_resend(request=request, email=form.cleaned_data["email"])
        # The same answer whether or not an email went out: no account enumeration.
        return render(
            request,
            "account/verification_resend.html",
            {"form": None, "sent_to": form.cleaned_data["email"]},
        )
    status = HTTPStatus.BAD_REQUEST if form.is_bound else HTTPStatus.OK
    return render(request, "account/verification_resend.html", {"form": form}, status=status)
