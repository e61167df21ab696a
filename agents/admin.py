"""Admin for agents, keys, rules and the token price table. Changes go through services so
they are audited and invalidate compiled policies."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest

from accounts.admin_site import ReadOnlyModelAdmin
from agents import services
from agents.models import Agent, ApiKey, ModelPrice, Rule, TokenUsage
from agents.policy_document import PolicyDocumentError, rule_spec_from_mapping


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "organization",
        "public_id",
        "is_active",
        "default_decision",
        "enforcement",
    )
    list_filter = ("is_active", "default_decision")
    search_fields = ("name", "public_id", "organization__name")
    readonly_fields = ("public_id", "policy_revision", "created_at", "updated_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Agent | None = None) -> list[str]:
        # The services change neither an agent's organisation nor its lists (a policy
        # document's): the admin shows them, so nothing it offers is silently ignored.
        fixed = ["policy_lists"] if obj is None else ["organization", "policy_lists"]
        return [*self.readonly_fields, *fixed]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Agents go only with their organisation (their audit rows keep pointing at them);
        # deactivating one is the audited way to stop it.
        return False

    def save_model(self, request: HttpRequest, obj: Agent, form: Any, change: bool) -> None:
        if not change:
            created = services.agent_create(
                organization=obj.organization,
                actor=request.user,
                name=obj.name,
                description=obj.description,
                default_decision=obj.default_decision,
                enforcement=obj.enforcement,
                source="admin",
            )
            obj.pk = created.pk
            obj.public_id = created.public_id
            return
        services.agent_update(
            agent=obj,
            actor=request.user,
            source="admin",
            **{field: getattr(obj, field) for field in form.changed_data},
        )


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are created through the API or warden_bootstrap (the secret is shown once);
    here they can be looked at and revoked."""

    list_display = ("name", "organization", "kind", "environment", "prefix", "agent")
    list_filter = ("kind", "environment")
    search_fields = ("name", "prefix", "public_id", "organization__name")
    readonly_fields = [f.name for f in ApiKey._meta.fields if f.name != "hashed_key"]
    exclude = ("hashed_key",)
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset: Any) -> None:
        for api_key in queryset:
            services.api_key_revoke(api_key=api_key, actor=request.user, source="admin")
        messages.success(request, f"Revoked {queryset.count()} key(s).")


class RuleAdminForm(forms.ModelForm):
    """The rule as its policy-document mapping (YAML/JSON keys), validated by the one
    validator; the listing columns are derived from it by the services."""

    class Meta:
        model = Rule
        fields = ["organization", "agent", "document", "position"]
        help_texts = {
            "document": "The rule as in a policy document: name, action, effect, when, "
            "unless, max_amount, limit, approval, environments, enabled, mode (docs/POLICY.md)."
        }

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        agent = data.get("agent") or (self.instance.agent if self.instance.agent_id else None)
        try:
            rule_spec_from_mapping(
                data.get("document"), lists=(agent.policy_lists if agent else None)
            )
        except PolicyDocumentError as exc:
            raise forms.ValidationError(str(exc)) from None
        return data


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    form = RuleAdminForm
    list_display = ("name", "organization", "agent", "action_pattern", "effect", "enabled")
    list_filter = ("effect", "enabled")
    search_fields = ("name", "action_pattern", "public_id", "organization__name")
    readonly_fields = ("public_id", "position", "created_at", "updated_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Rule | None = None) -> list[str]:
        # A rule stays with its agent; its position is its place in the policy document.
        fixed = [] if obj is None else ["organization", "agent"]
        return [*self.readonly_fields, *fixed]

    def save_model(self, request: HttpRequest, obj: Rule, form: Any, change: bool) -> None:
        if change:
            original = Rule.objects.get(pk=obj.pk)
            # The admin edits the whole document: keys left out are removed.
            data = {**dict.fromkeys(original.document), **obj.document}
            services.rule_update(rule=original, data=data, actor=request.user, source="admin")
        else:
            created = services.rule_create(
                organization=obj.organization,
                agent=obj.agent,
                data=obj.document,
                actor=request.user,
                source="admin",
            )
            obj.pk = created.pk

    def delete_model(self, request: HttpRequest, obj: Rule) -> None:
        services.rule_delete(rule=obj, actor=request.user, source="admin")

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for rule in queryset:
            services.rule_delete(rule=rule, actor=request.user, source="admin")


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    """Prices are the operator's and price every organisation's usage: each change goes
    through the services, which record it in every organisation's log."""

    list_display = ("model", "prompt_usd_per_million", "completion_usd_per_million")
    search_fields = ("model",)

    def save_model(self, request: HttpRequest, obj: ModelPrice, form: Any, change: bool) -> None:
        if change:
            services.model_price_update(
                actor=request.user,
                price=obj,
                source="admin",
                **{field: getattr(obj, field) for field in form.changed_data},
            )
            return
        created = services.model_price_create(
            actor=request.user,
            model=obj.model,
            prompt_usd_per_million=obj.prompt_usd_per_million,
            completion_usd_per_million=obj.completion_usd_per_million,
            source="admin",
        )
        obj.pk = created.pk

    def delete_model(self, request: HttpRequest, obj: ModelPrice) -> None:
        services.model_price_delete(actor=request.user, price=obj, source="admin")

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for price in queryset:
            services.model_price_delete(actor=request.user, price=price, source="admin")


@admin.register(TokenUsage)
class TokenUsageAdmin(ReadOnlyModelAdmin):
    list_display = ("created_at", "organization", "agent", "model", "total_tokens", "cost_usd")
    list_filter = ("model",)
    search_fields = ("model", "session_id", "public_id")
    readonly_fields = [f.name for f in TokenUsage._meta.fields]
