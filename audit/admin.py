"""The audit log in the admin: browse, filter and search; never add, change or delete."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from audit.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "organization",
        "kind",
        "actor_label",
        "agent_public_id",
        "action",
        "decision",
        "status",
        "rule_name",
        "environment",
        "latency_us",
    )
    list_filter = ("kind", "decision", "status", "environment", "source", "organization")
    search_fields = (
        "public_id",
        "action_id",
        "action",
        "agent_public_id",
        "actor_label",
        "rule_name",
        "session_id",
        "reason",
        "target_id",
    )
    date_hierarchy = "created_at"
    list_select_related = ("organization",)
    show_full_result_count = False
    actions = None

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
