"""Changing agents, keys and rules. Every change is audited and bumps the policy revision."""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Organization, User
from accounts.plans import (
    Feature,
    Limit,
    plan_allows,
    plan_cheapest_with,
    plan_limit,
    plan_require,
    plan_require_within_limit,
)
from agents import checks, runtime
from agents.models import Agent, ApiKey, ModelPrice, Rule, TokenUsage
from agents.policy import REQUIRES_APPROVAL
from agents.policy_document import (
    PolicyDocument,
    PolicyDocumentError,
    RuleDraft,
    dump_policy_document,
    parse_policy_document,
    rule_draft_from_mapping,
    rule_to_mapping,
)
from agents.selectors import rule_as_mapping, rule_list_for_agent
from audit.services import audit_record_change, model_snapshot
from wardenproject.errors import Conflict, NotFound, ValidationFailed
from wardenproject.ids import random_token

KEY_PREFIXES = {
    (ApiKey.Kind.AGENT, ApiKey.Environment.TEST): "wdn_test_",
    (ApiKey.Kind.AGENT, ApiKey.Environment.LIVE): "wdn_live_",
    (ApiKey.Kind.ORG, ApiKey.Environment.LIVE): "wdn_org_",
    (ApiKey.Kind.APPROVER, ApiKey.Environment.LIVE): "wdn_apv_",
}
KEY_RANDOM_LENGTH = 40  # base62: ~238 bits
MAX_GRACE_SECONDS = 30 * 86400


def key_hash(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def _plan_names(organization: Organization) -> dict[str, str]:
    approvals = plan_cheapest_with(Feature.APPROVAL_WORKFLOWS)
    quorum = plan_cheapest_with(Feature.APPROVAL_QUORUM)
    return {
        "approvals_plan": approvals.name if approvals else "a higher",
        "quorum_plan": quorum.name if quorum else "a higher",
    }


def _policy_changed(*, organization: Organization, agent: Agent | None) -> None:
    """Bump the revision of ``agent`` (or of every agent of the organisation) so every
    process recompiles; this process forgets its compiled copy as soon as we commit."""
    agents = Agent.objects.filter(organization=organization)
    if agent is not None:
        agents = agents.filter(pk=agent.pk)
    agents.update(policy_revision=F("policy_revision") + 1)
    agent_ids = [agent.pk] if agent is not None else None
    # Now (so this thread's next check sees the change even inside an outer transaction)
    # and again on commit (in case another thread recompiled from pre-commit rows).
    runtime.policy_forget(organization.pk, agent_ids)
    transaction.on_commit(lambda: runtime.policy_forget(organization.pk, agent_ids))


# --- Agents ---------------------------------------------------------------------------------


# Control characters (C0, DEL, C1), invisible format characters (zero-width, bidi overrides),
# line and paragraph separators, surrogates: none belongs in a name people read and type.
_NAME_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _agent_name_clean(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValidationFailed("An agent needs a name.", field="name")
    name = name.strip()
    if len(name) > 120:
        raise ValidationFailed("Agent names are at most 120 characters.", field="name")
    if any(unicodedata.category(character) in _NAME_REFUSED_CATEGORIES for character in name):
        raise ValidationFailed(
            "Agent names may not contain control, format or line-separator characters.",
            field="name",
        )
    if name.startswith("agt_"):
        raise ValidationFailed("Agent names may not start with agt_.", field="name")
    return name


def agent_create(
    *,
    organization: Organization,
    actor: User | None,
    name: str,
    description: str = "",
    default_decision: str = Agent.DefaultDecision.ALLOW,
    source: str = "api",
) -> Agent:
    name = _agent_name_clean(name)
    if default_decision not in Agent.DefaultDecision.values:
        raise ValidationFailed("default must be allow or block.", field="default")
    with transaction.atomic():
        count = Agent.objects.select_for_update().filter(organization=organization).count()
        plan_require_within_limit(organization, Limit.AGENTS, current=count)
        if Agent.objects.filter(organization=organization, name=name).exists():
            raise Conflict(f"An agent named {name!r} already exists.", field="name")
        agent = Agent.objects.create(
            organization=organization,
            name=name,
            description=description or "",
            default_decision=default_decision,
        )
        audit_record_change(
            organization=organization,
            actor_user=actor,
            target=agent,
            verb="created",
            before=None,
            after=model_snapshot(agent),
            source=source,
        )
    return agent


def agent_update(*, agent: Agent, actor: User | None, source: str = "api", **changes: Any) -> Agent:
    """Change name, description, default decision or active flag."""
    allowed = {"name", "description", "default_decision", "is_active"}
    unknown = set(changes) - allowed
    if unknown:
        raise ValidationFailed(f"Unknown field {sorted(unknown)[0]!r}.", field=sorted(unknown)[0])
    if "name" in changes:
        changes["name"] = _agent_name_clean(changes["name"])
    if "default_decision" in changes and (
        changes["default_decision"] not in Agent.DefaultDecision.values
    ):
        raise ValidationFailed("default must be allow or block.", field="default")
    if "is_active" in changes and not isinstance(changes["is_active"], bool):
        raise ValidationFailed("is_active must be true or false.", field="is_active")
    if "description" in changes and not isinstance(changes["description"], str):
        raise ValidationFailed("description must be a string.", field="description")
    with transaction.atomic():
        agent = Agent.objects.select_for_update().get(pk=agent.pk)
        before = model_snapshot(agent)
        for field, value in changes.items():
            setattr(agent, field, value)
        try:
            with transaction.atomic():
                agent.save()
        except IntegrityError:
            raise Conflict("An agent with that name already exists.", field="name") from None
        _policy_changed(organization=agent.organization, agent=agent)
        agent.refresh_from_db()
        audit_record_change(
            organization=agent.organization,
            actor_user=actor,
            target=agent,
            verb="updated",
            before=before,
            after=model_snapshot(agent),
            source=source,
        )
    return agent


def agent_deactivate(*, agent: Agent, actor: User | None, source: str = "api") -> Agent:
    """An inactive agent's checks are refused (403); its history stays."""
    return agent_update(agent=agent, actor=actor, source=source, is_active=False)


# --- API keys -------------------------------------------------------------------------------


def api_key_create(
    *,
    organization: Organization,
    kind: str,
    actor: User | None,
    agent: Agent | None = None,
    environment: str | None = None,
    name: str = "",
    source: str = "api",
) -> tuple[ApiKey, str]:
    """A new key and its secret (shown once; only the SHA-256 is stored)."""
    if kind not in ApiKey.Kind.values:
        raise ValidationFailed("kind must be agent, org or approver.", field="kind")
    if kind == ApiKey.Kind.AGENT:
        if agent is None:
            raise ValidationFailed("An agent key needs an agent.", field="agent")
        environment = environment or ApiKey.Environment.LIVE
        if environment not in ApiKey.Environment.values:
            raise ValidationFailed("environment must be test or live.", field="environment")
    else:
        if agent is not None:
            raise ValidationFailed(f"A {kind} key belongs to no agent.", field="agent")
        if environment not in (None, "", ApiKey.Environment.LIVE):
            raise ValidationFailed(f"A {kind} key is always live.", field="environment")
        environment = ApiKey.Environment.LIVE
    if agent is not None and agent.organization_id != organization.pk:
        raise NotFound("No such agent.")
    if not isinstance(name, str) or len(name) > 120:
        raise ValidationFailed("name must be a string of at most 120 characters.", field="name")
    prefix = KEY_PREFIXES[(kind, environment)]
    raw_key = prefix + random_token(KEY_RANDOM_LENGTH)
    with transaction.atomic():
        api_key = ApiKey.objects.create(
            organization=organization,
            agent=agent,
            kind=kind,
            environment=environment,
            name=name or f"{kind} key",
            prefix=raw_key[: len(prefix) + 4],
            hashed_key=key_hash(raw_key),
            created_by=actor,
        )
        audit_record_change(
            organization=organization,
            actor_user=actor,
            target=api_key,
            verb="created",
            before=None,
            after=model_snapshot(api_key),
            source=source,
        )
    return api_key, raw_key


def api_key_revoke(*, api_key: ApiKey, actor: User | None, source: str = "api") -> ApiKey:
    """Revoked at once here; other processes stop accepting it within KEY_CACHE_SECONDS."""
    with transaction.atomic():
        api_key = ApiKey.objects.select_for_update().get(pk=api_key.pk)
        if api_key.revoked_at is not None:
            return api_key
        before = model_snapshot(api_key)
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
        audit_record_change(
            organization=api_key.organization,
            actor_user=actor,
            target=api_key,
            verb="revoked",
            before=before,
            after=model_snapshot(api_key),
            source=source,
        )
        hashed = api_key.hashed_key
        transaction.on_commit(lambda: runtime.key_forget(hashed))
    runtime.key_forget(hashed)
    return api_key


def api_key_rotate(
    *, api_key: ApiKey, actor: User | None, grace_seconds: int = 0, source: str = "api"
) -> tuple[ApiKey, str]:
    """A new key of the same kind; the old one keeps working for ``grace_seconds``."""
    if (
        not isinstance(grace_seconds, int)
        or isinstance(grace_seconds, bool)
        or not 0 <= grace_seconds <= MAX_GRACE_SECONDS
    ):
        raise ValidationFailed(
            f"grace_seconds must be a whole number from 0 to {MAX_GRACE_SECONDS}.",
            field="grace_seconds",
        )
    with transaction.atomic():
        old = (
            ApiKey.objects.select_for_update(of=("self",))
            .select_related("agent", "organization")
            .get(pk=api_key.pk)
        )
        if not old.is_usable():
            raise Conflict("Only a usable key can be rotated.", extra={"status": "unusable"})
        if old.replaced_by_id is not None:
            raise Conflict("This key was already rotated.", extra={"status": "rotated"})
        new, raw = api_key_create(
            organization=old.organization,
            kind=old.kind,
            actor=actor,
            agent=old.agent,
            environment=old.environment,
            name=old.name,
            source=source,
        )
        before = model_snapshot(old)
        old.expires_at = timezone.now() + timedelta(seconds=grace_seconds)
        old.replaced_by = new
        old.save(update_fields=["expires_at", "replaced_by"])
        audit_record_change(
            organization=old.organization,
            actor_user=actor,
            target=old,
            verb="rotated",
            before=before,
            after=model_snapshot(old),
            source=source,
        )
        hashed = old.hashed_key
        transaction.on_commit(lambda: runtime.key_forget(hashed))
    return new, raw


def api_key_touch(*, api_key_id: int) -> None:
    """Record use; the caller makes sure this runs at most once a minute per key."""
    ApiKey.objects.filter(pk=api_key_id).update(last_used_at=timezone.now())


# --- Rules ----------------------------------------------------------------------------------


def _draft_from(organization: Organization, data: Mapping[str, Any]) -> RuleDraft:
    """Validate a rule mapping; plan gates answer 402 naming the plan that unlocks them."""
    if not isinstance(data, Mapping):
        raise ValidationFailed("A rule is a JSON object.", field=None)
    if data.get("effect") == REQUIRES_APPROVAL:
        plan_require(organization, Feature.APPROVAL_WORKFLOWS)
    approval = data.get("approval")
    if isinstance(approval, Mapping):
        required = approval.get("approvals_required", 1)
        if isinstance(required, int) and not isinstance(required, bool) and required > 1:
            plan_require(organization, Feature.APPROVAL_QUORUM)
    try:
        return rule_draft_from_mapping(data, **_plan_names(organization))
    except PolicyDocumentError as exc:
        first = exc.errors[0]
        raise ValidationFailed(
            str(first), field=first.field, extra={"errors": _errors_json(exc)}
        ) from None


def _errors_json(exc: PolicyDocumentError) -> list[dict[str, Any]]:
    return [{"rule": e.rule, "field": e.field, "message": e.message} for e in exc.errors]


def _rule_fields(draft: RuleDraft) -> dict[str, Any]:
    mapping = rule_to_mapping(draft)
    return {
        "name": draft.name,
        "description": draft.description,
        "action_pattern": draft.action,
        "effect": draft.effect,
        "conditions": mapping.get("when", []),
        "max_amount": draft.max_amount,
        "amount_field": draft.amount_field,
        "limit": mapping.get("limit"),
        "environments": sorted(draft.environments),
        "approval_timeout": draft.approval_timeout,
        "approvals_required": draft.approvals_required,
        "enabled": draft.enabled,
    }


def _rule_name_taken(organization: Organization, agent: Agent | None, name: str, exclude=None):
    rules = Rule.objects.filter(organization=organization, agent=agent, name=name)
    if exclude is not None:
        rules = rules.exclude(pk=exclude.pk)
    return rules.exists()


def rule_create(
    *,
    organization: Organization,
    agent: Agent | None,
    data: Mapping[str, Any],
    actor: User | None,
    source: str = "api",
) -> Rule:
    """A rule for ``agent``, or for every agent of the organisation when ``agent`` is None."""
    draft = _draft_from(organization, data)
    with transaction.atomic():
        existing = Rule.objects.select_for_update().filter(organization=organization, agent=agent)
        count = existing.count()
        plan_require_within_limit(organization, Limit.RULES_PER_AGENT, current=count)
        if _rule_name_taken(organization, agent, draft.name):
            raise Conflict(f"A rule named {draft.name!r} already exists.", field="name")
        last = existing.order_by("-position").values_list("position", flat=True).first()
        rule = Rule.objects.create(
            organization=organization,
            agent=agent,
            position=(last + 1) if last is not None else 0,
            **_rule_fields(draft),
        )
        _policy_changed(organization=organization, agent=agent)
        audit_record_change(
            organization=organization,
            actor_user=actor,
            target=rule,
            verb="created",
            before=None,
            after=model_snapshot(rule),
            source=source,
        )
    return rule


def rule_update(
    *, rule: Rule, data: Mapping[str, Any], actor: User | None, source: str = "api"
) -> Rule:
    """Merge ``data`` (document keys; null removes an optional key) into the rule."""
    if not isinstance(data, Mapping):
        raise ValidationFailed("A rule is a JSON object.")
    merged = {**rule_as_mapping(rule), **data}
    merged = {key: value for key, value in merged.items() if value is not None}
    draft = _draft_from(rule.organization, merged)
    with transaction.atomic():
        rule = (
            Rule.objects.select_for_update(of=("self",))
            .select_related("organization", "agent")
            .get(pk=rule.pk)
        )
        if _rule_name_taken(rule.organization, rule.agent, draft.name, exclude=rule):
            raise Conflict(f"A rule named {draft.name!r} already exists.", field="name")
        before = model_snapshot(rule)
        for field, value in _rule_fields(draft).items():
            setattr(rule, field, value)
        rule.save()
        _policy_changed(organization=rule.organization, agent=rule.agent)
        audit_record_change(
            organization=rule.organization,
            actor_user=actor,
            target=rule,
            verb="updated",
            before=before,
            after=model_snapshot(rule),
            source=source,
        )
    return rule


def rule_delete(*, rule: Rule, actor: User | None, source: str = "api") -> None:
    with transaction.atomic():
        before = model_snapshot(rule)
        organization, agent = rule.organization, rule.agent
        audit_record_change(
            organization=organization,
            actor_user=actor,
            target=rule,
            verb="deleted",
            before=before,
            after=None,
            source=source,
        )
        rule.delete()
        _policy_changed(organization=organization, agent=agent)


# --- Policy documents -----------------------------------------------------------------------


def policy_document_parse(
    *, organization: Organization, text: str | bytes | Mapping[str, Any], format: str | None
) -> PolicyDocument:
    """Validate a whole document against the organisation's plan (all errors at once)."""
    return parse_policy_document(
        text,
        format=format,
        approvals_enabled=plan_allows(organization, Feature.APPROVAL_WORKFLOWS),
        quorum_enabled=plan_allows(organization, Feature.APPROVAL_QUORUM),
        max_rules=plan_limit(organization, Limit.RULES_PER_AGENT),
        **_plan_names(organization),
    )


def _agent_document(agent: Agent) -> dict[str, Any]:
    return {
        "agent": agent.name,
        "default": agent.default_decision,
        "rules": [rule_as_mapping(rule) for rule in agent.rules.order_by("position", "id")],
    }


def policy_import(
    *,
    organization: Organization,
    document: PolicyDocument,
    actor: User | None,
    agent: Agent | None = None,
    source: str = "api",
) -> Agent:
    """Replace the agent's own rules and default with the document's, all or nothing.

    ``agent`` given: the document applies to it (its ``agent`` name must match or is
    ignored by the API). Otherwise the agent is found by name, or created.
    """
    with transaction.atomic():
        if agent is None:
            agent = Agent.objects.filter(organization=organization, name=document.agent).first()
            if agent is None:
                agent = agent_create(
                    organization=organization,
                    actor=actor,
                    name=document.agent,
                    default_decision=document.default,
                    source=source,
                )
        agent = Agent.objects.select_for_update().get(pk=agent.pk)
        before = _agent_document(agent)
        agent.default_decision = document.default
        agent.save(update_fields=["default_decision", "updated_at"])
        Rule.objects.filter(organization=organization, agent=agent).delete()
        Rule.objects.bulk_create(
            [
                Rule(organization=organization, agent=agent, position=index, **_rule_fields(draft))
                for index, draft in enumerate(document.rules)
            ]
        )
        _policy_changed(organization=organization, agent=agent)
        agent.refresh_from_db()
        audit_record_change(
            organization=organization,
            actor_user=actor,
            target=agent,
            verb="imported policy for",
            before=before,
            after=_agent_document(agent),
            source=source,
        )
    return agent


def policy_export(*, agent: Agent, format: str = "yaml") -> str:
    """The agent's own rules as a document that ``policy_import`` reads back unchanged."""
    drafts = [
        rule_draft_from_mapping(rule_as_mapping(rule))
        for rule in agent.rules.order_by("position", "id")
    ]
    # str(): a just-created agent holds the TextChoices member, which YAML cannot represent.
    default = str(agent.default_decision)
    return dump_policy_document(agent.name, default, drafts, format=format)


def policy_rules_for_agent(agent: Agent) -> list[Rule]:
    return rule_list_for_agent(agent=agent)


def agent_simulate(
    *, agent: Agent, action: str, arguments: dict[str, Any], environment: str
) -> dict[str, Any]:
    """What a check of ``agent`` would answer now (decision, matched rules, reason).

    Records nothing: no audit row, no approval request, no running-total contribution.
    """
    if not isinstance(action, str) or not action.strip():
        raise ValidationFailed("An action is required.", field="action")
    if not isinstance(arguments, dict):
        raise ValidationFailed("arguments must be a JSON object.", field="arguments")
    if environment not in ApiKey.Environment.values:
        raise ValidationFailed("environment must be test or live.", field="environment")
    agent_rt = runtime.agent_runtime(agent.pk, agent.organization)
    if agent_rt is None:
        raise NotFound("No such agent.")
    return checks.simulate(
        agent_rt=agent_rt, action=action.strip(), arguments=arguments, environment=environment
    )


# --- Token usage ----------------------------------------------------------------------------

_MILLION = Decimal(1_000_000)


def token_usage_record(
    *,
    organization: Organization,
    agent: Agent | None,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    session_id: str = "",
    environment: str = "",
) -> TokenUsage:
    """Store one LLM call's token counts, priced from the ModelPrice table (0 if unknown)."""
    price = ModelPrice.objects.filter(model=model).first()
    cost = Decimal(0)
    if price is not None:
        cost = (
            Decimal(prompt_tokens) * price.prompt_usd_per_million
            + Decimal(completion_tokens) * price.completion_usd_per_million
        ) / _MILLION
    return TokenUsage.objects.create(
        organization=organization,
        agent=agent,
        model=model,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
        cost_usd=cost.quantize(Decimal("0.000001")),
        session_id=session_id,
        environment=environment,
    )
