from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.models import Group
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import Invitation, Membership, Organization, Plan, User
from accounts.selectors import membership_is_last_owner
from accounts.services import (
    invitation_revoke,
    membership_change_role,
    membership_remove,
    organization_change_plan,
    organization_delete,
    organization_settings_clean,
    organization_update,
    plan_update,
)
from wardenproject.errors import DomainError, ValidationFailed
from wardenproject.text import counted

# Staff change organisations, memberships and invitations through the services (as the
# operator, ``as_operator``), so each change is audited in the organisation's log with the
# staff member as its actor and source "admin". What has no service here is read-only:
# members join by invitation (or warden_bootstrap), organisations are created with their
# owner (warden_bootstrap, or sign-up).


# Roles are memberships (accounts.permissions); Django's groups are not used.
admin.site.unregister(Group)


class MembershipInline(admin.TabularInline):
    """Read-only: a membership's role is changed (audited) on its own admin page."""

    model = Membership
    extra = 0
    fields = ["user", "role", "created_at"]
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class UserMembershipInline(MembershipInline):
    fields = ["organization", "role", "created_at"]
    readonly_fields = fields


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ["email"]
    list_display = [
        "email",
        "name",
        "public_id",
        "is_active",
        "is_staff",
        "current_organization",
        "date_joined",
        "last_login",
    ]
    list_filter = ["is_active", "is_staff", "is_superuser", "notify_approvals"]
    search_fields = ["email", "name", "public_id"]
    readonly_fields = ["public_id", "date_joined", "last_login"]
    list_select_related = ["current_organization"]
    inlines = [UserMembershipInline]
    fieldsets = [
        (None, {"fields": ["email", "password", "public_id"]}),
        ("Profile", {"fields": ["name", "notify_approvals", "current_organization"]}),
        (
            "Permissions",
            {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]},
        ),
        ("Dates", {"fields": ["date_joined", "last_login"]}),
    ]
    add_fieldsets = [
        (None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]}),
    ]
    raw_id_fields = ["current_organization"]

    # A deleted user leaves each organisation through the service (audited, approver keys
    # revoked), never by a silent cascade; the last owner of an organisation stays.
    def has_delete_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        if obj is not None and any(
            membership_is_last_owner(membership) for membership in obj.memberships.all()
        ):
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        for membership in obj.memberships.select_related("organization", "user"):
            membership_remove(
                actor=request.user, membership=membership, as_operator=True, source="admin"
            )
        super().delete_model(request, obj)


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "rank",
        "monthly_price_usd",
        "approval_workflows",
        "webhooks",
        "approval_quorum",
        "max_agents",
        "max_rules_per_agent",
        "audit_retention_days",
        "api_requests_per_minute",
        "organization_count",
    ]
    list_filter = ["approval_workflows", "webhooks", "approval_quorum"]
    search_fields = ["name", "slug"]
    ordering = ["rank"]
    readonly_fields = ["slug"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Plan]:
        return super().get_queryset(request).annotate(_orgs=Count("organizations"))

    # The catalogue is the plans the migration seeds (code and commands name them by slug).
    # Their terms change through the service, which records the change in the log of every
    # organisation on the plan; a plan is neither added nor deleted here.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Plan | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Plan, form: Any, change: bool) -> None:
        plan_update(
            actor=request.user,
            plan=obj,
            source="admin",
            **{field: getattr(obj, field) for field in form.changed_data},
        )

    @admin.display(description="Organisations", ordering="_orgs")
    def organization_count(self, obj: Plan) -> int:
        return obj._orgs


class OrganizationAdminForm(forms.ModelForm):
    class Meta:
        model = Organization
        fields = ["name", "plan", "default_approval_timeout", "time_zone"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if {"name", "default_approval_timeout", "time_zone"} <= set(data):
            try:
                organization_settings_clean(
                    name=data["name"],
                    default_approval_timeout=data["default_approval_timeout"],
                    time_zone=data["time_zone"],
                )
            except ValidationFailed as exc:
                self.add_error(exc.field, exc.detail)
        return data


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    form = OrganizationAdminForm
    list_display = ["name", "public_id", "plan", "member_count", "created_at"]
    list_filter = ["plan", "created_at"]
    list_select_related = ["plan"]
    search_fields = ["name", "public_id", "memberships__user__email"]
    readonly_fields = ["public_id", "created_at"]
    fields = ["name", "public_id", "plan", "default_approval_timeout", "time_zone", "created_at"]
    inlines = [MembershipInline]
    date_hierarchy = "created_at"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Organization]:
        return super().get_queryset(request).annotate(_members=Count("memberships", distinct=True))

    @admin.display(description="Members", ordering="_members")
    def member_count(self, obj: Organization) -> int:
        return obj._members

    def get_deleted_objects(self, objs, request: HttpRequest):
        # What an organisation owns goes with it, append-only audit rows included: the
        # permission to delete the organisation is the only one needed.
        deleted, model_count, _perms_needed, protected = super().get_deleted_objects(objs, request)
        return deleted, model_count, set(), protected

    def delete_model(self, request: HttpRequest, obj: Organization) -> None:
        organization_delete(organization=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Organization]) -> None:
        for organization in queryset:
            organization_delete(organization=organization)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # an organisation is created with its owner: warden_bootstrap or sign-up

    def save_model(self, request: HttpRequest, obj: Organization, form, change: bool) -> None:
        # Staff (the operator) may set any plan, whether or not owners may change theirs
        # (WARDEN_SELF_SERVE_PLANS), and any setting; the services audit each change.
        stored = Organization.objects.select_related("plan").get(pk=obj.pk)
        if {"name", "default_approval_timeout", "time_zone"} & set(form.changed_data):
            organization_update(
                actor=request.user,
                organization=stored,
                name=obj.name,
                default_approval_timeout=obj.default_approval_timeout,
                time_zone=obj.time_zone,
                as_operator=True,
                source="admin",
            )
        if "plan" in form.changed_data:
            organization_change_plan(
                actor=request.user,
                organization=stored,
                plan=obj.plan,
                as_operator=True,
                source="admin",
            )


class MembershipAdminForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ["role"]

    def clean_role(self) -> str:
        role = self.cleaned_data["role"]
        if role != Membership.Role.OWNER and membership_is_last_owner(self.instance):
            raise forms.ValidationError(
                "An organisation needs at least one owner: make someone else an owner first."
            )
        return role


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    """Roles are changed and members removed through the services (audited); members are
    added by invitation or warden_bootstrap."""

    form = MembershipAdminForm
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role", "organization__plan"]
    list_select_related = ["user", "organization"]
    search_fields = ["user__email", "organization__name", "organization__public_id"]
    fields = ["user", "organization", "role", "created_at"]
    readonly_fields = ["user", "organization", "created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Membership | None = None) -> bool:
        if obj is not None and membership_is_last_owner(obj):
            return False  # the last owner stays
        return super().has_delete_permission(request, obj)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # one at a time, each through the service
        return actions

    def save_model(self, request: HttpRequest, obj: Membership, form: Any, change: bool) -> None:
        if "role" in form.changed_data:
            membership_change_role(
                actor=request.user,
                membership=Membership.objects.select_related("organization").get(pk=obj.pk),
                role=obj.role,
                as_operator=True,
                source="admin",
            )

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        membership_remove(actor=request.user, membership=obj, as_operator=True, source="admin")


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = [
        "email",
        "organization",
        "role",
        "status",
        "invited_by",
        "created_at",
        "expires_at",
    ]
    list_filter = ["role", "created_at", "accepted_at", "revoked_at"]
    list_select_related = ["organization", "invited_by"]
    search_fields = ["email", "public_id", "organization__name", "organization__public_id"]
    readonly_fields = ["public_id", "created_at", "accepted_at", "accepted_by", "invited_by"]
    actions = ["revoke"]

    # Invitations are sent from the Members page (the email goes with them) and revoked here
    # through the service (audited); they are never edited or deleted by hand.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Status")
    def status(self, obj: Invitation) -> str:
        if obj.revoked_at:
            return "revoked"
        if obj.accepted_at:
            return "accepted"
        if obj.expires_at <= timezone.now():
            return "expired"
        return "pending"

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("accounts.change_invitation")

    @admin.action(description="Revoke selected pending invitations", permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[Invitation]) -> None:
        count = 0
        pending = queryset.filter(accepted_at__isnull=True, revoked_at__isnull=True)
        for invitation in pending.select_related("organization"):
            try:
                invitation_revoke(
                    actor=request.user, invitation=invitation, as_operator=True, source="admin"
                )
            except DomainError as exc:  # accepted or revoked meanwhile
                self.message_user(request, f"{invitation.email}: {exc.detail}", messages.WARNING)
                continue
            count += 1
        self.message_user(request, f"Revoked {counted(count, 'invitation')}.")
