from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from accounts.admin_site import ReadOnlyModelAdmin
from accounts.plans import Feature, plan_allows
from webhooks import services
from webhooks.delivery import url_address_problem, url_problem
from webhooks.formats import subscription_refusal
from webhooks.models import Attempt, Delivery, Endpoint, Event


class EndpointAdminForm(forms.ModelForm):
    class Meta:
        model = Endpoint
        fields = [  # never the signing secrets
            "organization",
            "url",
            "description",
            "events",
            "agents",
            "format",
            "enabled",
            "disabled_reason",
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        organization = data.get("organization") or getattr(self.instance, "organization", None)
        if organization is not None and not plan_allows(organization, Feature.WEBHOOKS):
            raise forms.ValidationError(
                f"{organization.name}'s plan has no webhooks: endpoints cannot change."
            )
        agents = data.get("agents") or []
        if organization is not None and any(
            agent.organization_id != organization.pk for agent in agents
        ):
            self.add_error("agents", "Choose agents of the endpoint's organisation.")
        events = data.get("events")
        if "events" in data and (
            not isinstance(events, list)
            or not events
            or any(event not in services.EVENT_TYPES for event in events)
        ):
            self.add_error(
                "events", f"A list of one or more of: {', '.join(services.EVENT_TYPES)}."
            )
        elif isinstance(events, list):
            refusal = subscription_refusal(data.get("format") or self.instance.format, events)
            if refusal:
                self.add_error("events", refusal)
        return data

    def clean_url(self) -> str:
        """The same refusals as the API and the pages (scheme, credentials, address)."""
        url = self.cleaned_data["url"]
        problem = url_problem(url) or url_address_problem(url)
        if problem:
            raise forms.ValidationError(problem)
        return url


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    form = EndpointAdminForm
    list_display = ["url", "organization", "format", "enabled", "failing_since", "created_at"]
    list_filter = ["format", "enabled"]
    search_fields = ["url", "public_id", "description", "organization__name"]
    # Signing secrets never appear in the admin, not even encrypted.
    exclude = ["secret", "previous_secret"]
    readonly_fields = ["public_id", "previous_secret_expires_at", "failing_since", "created_at"]
    raw_id_fields = ["organization"]
    filter_horizontal = ["agents"]

    def has_add_permission(self, request) -> bool:
        return False  # a new endpoint needs a secret shown once: use the page, API or command

    def get_readonly_fields(self, request: HttpRequest, obj: Endpoint | None = None) -> list[str]:
        # The organisation and format are fixed at creation (the secret's shape depends on
        # the format); the reason for disabling is written by the service.
        return [*self.readonly_fields, "organization", "format", "disabled_reason"]

    # Changes and deletions go through the services, so they are audited (source admin).
    def save_model(self, request: HttpRequest, obj: Endpoint, form: Any, change: bool) -> None:
        data = form.cleaned_data
        services.endpoint_update(
            endpoint=Endpoint.objects.select_related("organization").get(pk=obj.pk),
            actor=request.user,
            source="admin",
            url=data["url"],
            events=data["events"],
            description=data["description"],
            agents=[agent.public_id for agent in data["agents"]],
            enabled=data["enabled"],
        )

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """The agents were set by ``endpoint_update`` in ``save_model``."""

    def delete_model(self, request: HttpRequest, obj: Endpoint) -> None:
        services.endpoint_delete(endpoint=obj, actor=request.user, source="admin")

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for endpoint in queryset.select_related("organization"):
            services.endpoint_delete(endpoint=endpoint, actor=request.user, source="admin")


class DeliveryInline(admin.TabularInline):
    model = Delivery
    fields = ["public_id", "endpoint", "status", "attempt_count", "next_attempt_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Event)
class EventAdmin(ReadOnlyModelAdmin):
    list_display = ["public_id", "event_type", "organization", "action_id", "created_at"]
    list_filter = ["event_type"]
    search_fields = ["public_id", "action_id", "organization__name"]
    readonly_fields = ["public_id", "organization", "event_type", "agent", "action_id", "data"]
    date_hierarchy = "created_at"
    inlines = [DeliveryInline]


class AttemptInline(admin.TabularInline):
    model = Attempt
    fields = ["number", "created_at", "response_status", "duration_ms", "error"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyModelAdmin):
    list_display = [
        "public_id",
        "endpoint",
        "event",
        "status",
        "attempt_count",
        "last_status_code",
        "next_attempt_at",
        "created_at",
    ]
    list_filter = ["status", "endpoint__format"]
    search_fields = ["public_id", "event__public_id", "endpoint__url", "event__action_id"]
    raw_id_fields = ["event", "endpoint"]
    readonly_fields = ["public_id", "leased_until", "queued_at", "completed_at"]
    date_hierarchy = "created_at"
    inlines = [AttemptInline]


@admin.register(Attempt)
class AttemptAdmin(ReadOnlyModelAdmin):
    list_display = ["delivery", "number", "response_status", "duration_ms", "error", "created_at"]
    list_filter = ["response_status"]
    search_fields = ["delivery__public_id", "request_url", "error"]
    raw_id_fields = ["delivery"]
    date_hierarchy = "created_at"
