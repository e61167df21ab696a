from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import Invitation, Membership, Organization, Plan, User
from accounts.services import organization_change_plan, organization_delete


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]


class UserMembershipInline(MembershipInline):
    autocomplete_fields = ["organization"]
    fields = ["organization", "role", "created_at"]


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

    def get_queryset(self, request: HttpRequest) -> QuerySet[Plan]:
        return super().get_queryset(request).annotate(_orgs=Count("organizations"))

    @admin.display(description="Organisations", ordering="_orgs")
    def organization_count(self, obj: Plan) -> int:
        return obj._orgs


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
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

    def save_model(self, request: HttpRequest, obj: Organization, form, change: bool) -> None:
        # Staff (the operator) may set any plan, whether or not owners may change theirs
        # (WARDEN_SELF_SERVE_PLANS); a change goes through the service so it is audited.
        if change and "plan" in form.changed_data:
            new_plan = obj.plan
            obj.plan_id = form.initial["plan"]
            super().save_model(request, obj, form, change)
            organization_change_plan(
                actor=request.user,
                organization=obj,
                plan=new_plan,
                as_operator=True,
                source="admin",
            )
            return
        super().save_model(request, obj, form, change)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role", "organization__plan"]
    list_select_related = ["user", "organization"]
    search_fields = ["user__email", "organization__name", "organization__public_id"]
    autocomplete_fields = ["user", "organization"]


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
    autocomplete_fields = ["organization"]
    actions = ["revoke"]

    @admin.display(description="Status")
    def status(self, obj: Invitation) -> str:
        if obj.revoked_at:
            return "revoked"
        if obj.accepted_at:
            return "accepted"
        if obj.expires_at <= timezone.now():
            return "expired"
        return "pending"

    @admin.action(description="Revoke selected pending invitations")
    def revoke(self, request: HttpRequest, queryset: QuerySet[Invitation]) -> None:
        count = queryset.filter(accepted_at__isnull=True, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        self.message_user(request, f"Revoked {count} invitation(s).")
