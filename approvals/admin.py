"""The approval queue in the Django admin. Read-only rows; approve/deny go through
approval_decide (with an intermediate page for notes), like every other channel. Grants
(remembered approvals) are listed read-only and revoked through grant_revoke."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from approvals.forms import NotesForm
from approvals.models import ApprovalRequest, ApprovalVote, Grant
from approvals.selectors import (
    AGE_BUCKETS,
    age_bucket_filter,
    approval_decide_refusal,
    arguments_rows,
)
from approvals.services import approval_decide, grant_revoke
from wardenproject.errors import DomainError


class AgeFilter(admin.SimpleListFilter):
    title = "age"
    parameter_name = "age"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        labels = {
            "lt5m": "Under 5 minutes",
            "5m-1h": "5 minutes to 1 hour",
            "1h-1d": "1 hour to 1 day",
            "gt1d": "Over 1 day",
        }
        return [(key, labels[key]) for key in AGE_BUCKETS]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in AGE_BUCKETS:
            return queryset.filter(age_bucket_filter(self.value(), timezone.now()))
        return queryset


class ApprovalVoteInline(admin.TabularInline):
    model = ApprovalVote
    extra = 0
    can_delete = False
    fields = ["voter_label", "vote", "notes", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class _OrganizationRecordAdmin(admin.ModelAdmin):
    """Records of an organisation that the product makes (requests, grants): never added
    or deleted here; staff who are not superusers see only their organisations' rows."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        return qs.filter(organization__memberships__user=request.user)


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(_OrganizationRecordAdmin):
    list_display = [
        "action",
        "agent",
        "organization",
        "environment",
        "status",
        "approvals_progress",
        "requested_at",
        "expires_at",
    ]
    list_filter = ["status", "agent", "environment", AgeFilter, "organization"]
    search_fields = ["action_id", "action", "agent__name", "reason", "rule_name"]
    list_select_related = ["agent", "organization"]
    date_hierarchy = "requested_at"
    actions = ["approve_selected", "deny_selected"]
    inlines = [ApprovalVoteInline]
    readonly_fields = [
        "action_id",
        "organization",
        "agent",
        "action",
        "arguments_table",
        "environment",
        "session_id",
        "rule_name",
        "reason",
        "status",
        "approvals_required",
        "requested_at",
        "expires_at",
        "decided_at",
        "decided_by_label",
        "notes",
        "claimed_at",
        "notified_at",
        "arguments_hash",
    ]
    fields = readonly_fields

    @admin.display(description="approvals")
    def approvals_progress(self, obj: ApprovalRequest) -> str:
        approved = obj.votes.filter(vote=ApprovalVote.Vote.APPROVE).count()
        return f"{approved}/{obj.approvals_required}"

    @admin.display(description="arguments")
    def arguments_table(self, obj: ApprovalRequest) -> str:
        rows = arguments_rows(obj.arguments)
        if not rows:
            return "—"
        body = format_html_join(
            "", "<tr><th scope='row'>{}</th><td>{}</td></tr>", ((n, v) for n, v in rows)
        )
        return format_html(
            "<table class='approval-arguments'><thead><tr><th>Name</th><th>Value</th></tr>"
            "</thead><tbody>{}</tbody></table>",
            body,
        )

    def _decide(
        self, request: HttpRequest, queryset: QuerySet, *, approve: bool
    ) -> HttpResponse | None:
        verb = "approve" if approve else "deny"
        done_verb = "approved" if approve else "denied"
        if "confirm" not in request.POST:
            return TemplateResponse(
                request,
                "approvals/admin_decide.html",
                {
                    **self.admin_site.each_context(request),
                    "title": f"{verb.capitalize()} {queryset.count()} request(s)",
                    "requests": queryset,
                    "form": NotesForm(),
                    "action": f"{verb}_selected",
                    "verb": verb,
                    "opts": self.model._meta,
                    "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
                },
            )
        form = NotesForm(request.POST)
        notes = form.cleaned_data["notes"] if form.is_valid() else ""
        done = 0
        # The admin capitalises a message's first letter: the request's id never comes first.
        for item in queryset.select_related("organization"):
            refusal = approval_decide_refusal(user=request.user, request=item)
            if refusal is not None:
                self.message_user(
                    request, f"Request {item.action_id} not {done_verb}: {refusal}", messages.ERROR
                )
                continue
            try:
                approval_decide(
                    request_or_action_id=item,
                    actor_user=request.user,
                    approve=approve,
                    notes=notes,
                    source="admin",
                )
                done += 1
            except DomainError as error:
                self.message_user(
                    request,
                    f"Request {item.action_id} not {done_verb}: {error.detail}",
                    messages.ERROR,
                )
        if done:
            self.message_user(request, f"{done} request(s) {done_verb}.", messages.SUCCESS)
        return None

    @admin.action(description="Approve selected requests (with notes)")
    def approve_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._decide(request, queryset, approve=True)

    @admin.action(description="Deny selected requests (with notes)")
    def deny_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._decide(request, queryset, approve=False)


@admin.register(Grant)
class GrantAdmin(_OrganizationRecordAdmin):
    list_display = [
        "public_id",
        "kind",
        "agent",
        "organization",
        "environment",
        "action",
        "rule_name",
        "uses_left",
        "use_count",
        "expires_at",
        "revoked_at",
        "created_by_label",
    ]
    list_filter = ["kind", "environment", "organization"]
    search_fields = ["public_id", "action", "agent__name", "rule_name", "created_by_label"]
    list_select_related = ["agent", "organization"]
    actions = ["revoke_selected"]
    readonly_fields = [
        "public_id",
        "organization",
        "agent",
        "environment",
        "action",
        "rule_name",
        "rule_public_id",
        "kind",
        "arguments_hash",
        "session_id",
        "max_amount",
        "amount_field",
        "uses",
        "uses_left",
        "use_count",
        "last_used_at",
        "expires_at",
        "request",
        "created_at",
        "created_by_label",
        "revoked_at",
        "revoked_by_label",
    ]
    fields = readonly_fields

    @admin.action(description="Revoke selected grants")
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = 0
        for grant in queryset.select_related("organization", "agent"):
            try:
                grant_revoke(grant=grant, actor_user=request.user, source="admin")
                done += 1
            except DomainError as error:
                self.message_user(request, f"{grant.public_id}: {error.detail}", messages.ERROR)
        if done:
            self.message_user(request, f"{done} grant(s) revoked.", messages.SUCCESS)
