"""Changing agents, keys and rules. Every change is audited and bumps the policy revision."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import Organization, User
from accounts.permissions import Capability, membership_require, operator_require
from accounts.plans import (
    Feature,
    Limit,
    plan_allows,
    plan_cheapest_with,
    plan_limit,
    plan_require,
    plan_require_within_limit,
)
from agents import checks, limits, runtime, selectors
from agents.models import Agent, ApiKey, ModelPrice, PolicyVersion, Rule, TokenUsage
from agents.policy import ENFORCE, REQUIRES_APPROVAL, SHADOW, RuleSpec, action_name_problem
from agents.policy_document import (
    PolicyDocument,
    PolicyDocumentError,
    PolicyError,
    document_text,
    dump_policy_document,
    parse_policy_document,
    rule_spec_from_mapping,
    rule_to_mapping,
)
from agents.selectors import rule_list_for_agent
from audit.services import (
    actor_label,
    audit_record_change,
    audit_record_operator_change,
    model_snapshot,
)
from wardenproject.errors import Conflict, NotFound, ValidationFailed
from wardenproject.ids import random_token
from wardenproject.tasks import enqueue_on_commit

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


def _enforcement_check(enforcement: object) -> None:
    if enforcement not in Agent.Enforcement.values:
        raise ValidationFailed("enforcement must be enforce or log_only.", field="enforcement")


def agent_create(
    *,
    organization: Organization,
    actor: User | None,
    name: str,
    description: str = "",
    default_decision: str = Agent.DefaultDecision.ALLOW,
    enforcement: str = Agent.Enforcement.ENFORCE,
    source: str = "api",
) -> Agent:
    name = _agent_name_clean(name)
    if default_decision not in Agent.DefaultDecision.values:
        raise ValidationFailed("default must be allow or block.", field="default")
    _enforcement_check(enforcement)
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
            enforcement=enforcement,
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
        _versions_record(
            organization=organization, agent=agent, actor=actor, source=source, note=""
        )
    return agent


def agent_update(
    *, agent: Agent, actor: User | None, source: str = "api", note: str = "", **changes: Any
) -> Agent:
    """Change name, description, default decision, enforcement or active flag. A new
    default (or name) is a new policy version, with ``note``."""
    allowed = {"name", "description", "default_decision", "enforcement", "is_active"}
    unknown = set(changes) - allowed
    if unknown:
        raise ValidationFailed(f"Unknown field {sorted(unknown)[0]!r}.", field=sorted(unknown)[0])
    if "name" in changes:
        changes["name"] = _agent_name_clean(changes["name"])
    if "default_decision" in changes and (
        changes["default_decision"] not in Agent.DefaultDecision.values
    ):
        raise ValidationFailed("default must be allow or block.", field="default")
    if "enforcement" in changes:
        _enforcement_check(changes["enforcement"])
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
        _versions_record(
            organization=agent.organization, agent=agent, actor=actor, source=source, note=note
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
    """A new key and its secret (shown once; only the SHA-256 is stored).

    An approver key belongs to the member who creates it (``actor``) and votes as that
    person: it needs an ``actor`` who may decide approvals in ``organization``, and it stops
    working when that person leaves (see ``runtime._principal_load``).
    """
    if kind not in ApiKey.Kind.values:
        raise ValidationFailed("kind must be agent, org or approver.", field="kind")
    if kind == ApiKey.Kind.APPROVER:
        if actor is None:
            raise ValidationFailed(
                "An approver key votes as the member who creates it: create it from a "
                "member's account.",
                field="kind",
            )
        membership_require(
            user=actor, organization=organization, capability=Capability.DECIDE_APPROVALS
        )
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


def api_key_revoke_approver_keys_of(
    *, organization: Organization, user: User, actor: User | None, source: str = "api"
) -> int:
    """Revoke every usable approver key ``user`` created in ``organization`` (they are
    leaving it); each revocation is audited and forgotten at once in this process."""
    now = timezone.now()
    keys = ApiKey.objects.filter(
        organization=organization,
        kind=ApiKey.Kind.APPROVER,
        created_by=user,
        revoked_at__isnull=True,
    ).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
    revoked = 0
    for api_key in keys:
        api_key_revoke(api_key=api_key, actor=actor, source=source)
        revoked += 1
    return revoked


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


def _plan_problems(organization: Organization, spec: RuleSpec) -> list[tuple[str, str, str]]:
    """(field, message, feature) for what the organisation's plan does not allow in a rule."""
    problems = []
    names = _plan_names(organization)
    if spec.effect == REQUIRES_APPROVAL and not plan_allows(
        organization, Feature.APPROVAL_WORKFLOWS
    ):
        problems.append(
            (
                "effect",
                f"requires_approval needs the {names['approvals_plan']} plan or higher",
                Feature.APPROVAL_WORKFLOWS,
            )
        )
    if spec.approvals_required > 1 and not plan_allows(organization, Feature.APPROVAL_QUORUM):
        problems.append(
            (
                "approval.approvals_required",
                f"more than one approval needs the {names['quorum_plan']} plan or higher",
                Feature.APPROVAL_QUORUM,
            )
        )
    return problems


def _rule_spec_from(
    organization: Organization, agent: Agent | None, data: Mapping[str, Any]
) -> RuleSpec:
    """Validate one rule (the one validator); plan gates answer 402 naming the plan."""
    if not isinstance(data, Mapping):
        raise ValidationFailed("A rule is a JSON object.", field=None)
    try:
        spec = rule_spec_from_mapping(data, lists=_agent_lists(agent) if agent else None)
    except PolicyDocumentError as exc:
        raise policy_error_answer(exc) from None
    for _field, _message, feature in _plan_problems(organization, spec):
        plan_require(organization, feature)
    return spec


def _agent_lists(agent: Agent) -> dict[str, tuple[Any, ...]]:
    return {name: tuple(items) for name, items in (agent.policy_lists or {}).items()}


def policy_error_answer(exc: PolicyDocumentError) -> ValidationFailed:
    """A 400 naming the first problem's field and listing every problem (with path/line)."""
    first = exc.errors[0]
    return ValidationFailed(
        str(first),
        field=first.path or first.field,
        extra={"rule": first.rule, "errors": [error.as_dict() for error in exc.errors]},
    )


def _rule_columns(spec: RuleSpec) -> dict[str, Any]:
    """The stored form of a validated rule: its document, and the columns lists need."""
    return {
        "document": rule_to_mapping(spec),
        "name": spec.name,
        "description": spec.description,
        "action_pattern": spec.action,
        "effect": spec.effect,
        "enabled": spec.enabled,
    }


def _counts_anew(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> bool:
    """Whether a rule's change needs its running totals recounted from the audit log: its
    limit counts differently, or it is promoted from shadow (a shadow rule's budgets are read,
    never spent, so they hold only what was last recounted)."""
    promoted = (before or {}).get("mode") == SHADOW and after.get("mode", ENFORCE) == ENFORCE
    return promoted or _limit_series(before) != _limit_series(after)


def _limit_series(document: Mapping[str, Any] | None) -> tuple[Any, ...] | None:
    """What identifies a rule's budgets besides the rule: a change starts new counters."""
    limit = (document or {}).get("limit")
    if not isinstance(limit, Mapping):
        return None
    kind = "count" if "count" in limit else "sum"
    return (kind, limit.get("sum"), str(limit.get("per")), limit.get("by"))


def _counters_recount(organization: Organization, agent: Agent | None, rule: Rule) -> None:
    """Count the window's history into a rule's new budgets (every agent's, for an
    organisation-wide rule), as a new limit always has: at once when the window holds at
    most WARDEN_LIMITS_RECOUNT_INLINE_ROWS calls it could count, otherwise by a task, the
    rule's limit applying to every call it would count meanwhile (it fails closed)."""
    agents = [agent] if agent is not None else list(organization.agents.all())
    for each in agents:
        each.organization = organization
    spec = selectors.rule_spec(rule, lists=agent.policy_lists if agent else None)
    if spec.limit is None:
        return
    inline = settings.WARDEN_LIMITS_RECOUNT_INLINE_ROWS
    if limits.history_is_short(agents=agents, spec=spec, rows=inline, now=timezone.now()):
        for each in agents:
            limits.limit_counters_rebuild(agent=each, rule_ids={rule.public_id})
        return
    Rule.objects.filter(pk=rule.pk).update(counters_pending=True)
    rule.counters_pending = True
    from agents.tasks import agents_recount_pending

    enqueue_on_commit(agents_recount_pending)


def rule_counters_recount_pending() -> int:
    """Recount the running totals of every rule waiting for it (the task and its beat
    sweep), each in its own transaction; the rule's limit then counts normally again.
    Returns how many rules were recounted."""
    done = 0
    for rule_id in list(Rule.objects.filter(counters_pending=True).values_list("pk", flat=True)):
        with transaction.atomic():
            rule = (
                Rule.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("organization", "agent")
                .filter(pk=rule_id, counters_pending=True)
                .first()
            )
            if rule is None:
                continue  # done meanwhile, or being done by another worker
            organization = rule.organization
            agents = [rule.agent] if rule.agent else list(organization.agents.all())
            for agent in agents:
                agent.organization = organization
                limits.limit_counters_rebuild(agent=agent, rule_ids={rule.public_id})
            rule.counters_pending = False
            rule.save(update_fields=["counters_pending"])
            _policy_changed(organization=organization, agent=rule.agent)
        done += 1
    return done


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
    note: str = "",
) -> Rule:
    """A rule for ``agent``, or for every agent of the organisation when ``agent`` is None.
    Each agent it applies to gets a new policy version (with ``note``)."""
    spec = _rule_spec_from(organization, agent, data)
    with transaction.atomic():
        existing = Rule.objects.select_for_update().filter(organization=organization, agent=agent)
        count = existing.count()
        plan_require_within_limit(organization, Limit.RULES_PER_AGENT, current=count)
        if _rule_name_taken(organization, agent, spec.name):
            raise Conflict(f"A rule named {spec.name!r} already exists.", field="name")
        last = existing.order_by("-position").values_list("position", flat=True).first()
        rule = Rule.objects.create(
            organization=organization,
            agent=agent,
            position=(last + 1) if last is not None else 0,
            **_rule_columns(spec),
        )
        if spec.limit is not None:
            _counters_recount(organization, agent, rule)
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
        _versions_record(
            organization=organization, agent=agent, actor=actor, source=source, note=note
        )
    return rule


def rule_update(
    *,
    rule: Rule,
    data: Mapping[str, Any],
    actor: User | None,
    source: str = "api",
    note: str = "",
) -> Rule:
    """Merge ``data`` (document keys; null removes an optional key) into the rule."""
    if not isinstance(data, Mapping):
        raise ValidationFailed("A rule is a JSON object.")
    merged = {**rule.document, **data}
    merged = {key: value for key, value in merged.items() if value is not None}
    spec = _rule_spec_from(rule.organization, rule.agent, merged)
    with transaction.atomic():
        rule = (
            Rule.objects.select_for_update(of=("self",))
            .select_related("organization", "agent")
            .get(pk=rule.pk)
        )
        if _rule_name_taken(rule.organization, rule.agent, spec.name, exclude=rule):
            raise Conflict(f"A rule named {spec.name!r} already exists.", field="name")
        before = model_snapshot(rule)
        new_series = _counts_anew(rule.document, rule_to_mapping(spec))
        for field, value in _rule_columns(spec).items():
            setattr(rule, field, value)
        rule.save()
        if new_series and spec.limit is not None:
            _counters_recount(rule.organization, rule.agent, rule)
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
        _versions_record(
            organization=rule.organization, agent=rule.agent, actor=actor, source=source, note=note
        )
    return rule


def rule_delete(*, rule: Rule, actor: User | None, source: str = "api", note: str = "") -> None:
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
        _versions_record(
            organization=organization, agent=agent, actor=actor, source=source, note=note
        )


# --- Policy documents -----------------------------------------------------------------------


def policy_document_parse(
    *, organization: Organization, text: str | bytes | Mapping[str, Any], format: str | None
) -> PolicyDocument:
    """Validate a whole document against the organisation's plan (all errors at once)."""
    document = parse_policy_document(
        text, format=format, max_rules=plan_limit(organization, Limit.RULES_PER_AGENT)
    )
    errors = [
        PolicyError(spec.name, field, message, path=f"rules[{index}].{field}")
        for index, spec in enumerate(document.rules)
        for field, message, _feature in _plan_problems(organization, spec)
    ]
    if errors:
        raise PolicyDocumentError(errors)
    return document


def _agent_document(agent: Agent) -> dict[str, Any]:
    document: dict[str, Any] = {"agent": agent.name, "default": agent.default_decision}
    if agent.policy_lists:
        document["lists"] = agent.policy_lists
    document["rules"] = [rule.document for rule in agent.rules.order_by("position", "id")]
    return document


def policy_import(
    *,
    organization: Organization,
    document: PolicyDocument,
    actor: User | None,
    agent: Agent | None = None,
    source: str = "api",
    note: str = "",
    restored_from: int | None = None,
) -> Agent:
    """Make the agent's own rules, lists and default the document's, all or nothing.

    Rules are matched by name: a rule that stays keeps its id (and its running totals, as
    long as its limit counts the same way); new rules are added, missing ones deleted.
    ``agent`` given: the document applies to it (its ``agent`` name must match or is
    ignored by the API). Otherwise the agent is found by name, or created.
    The agent gets a new policy version (with ``note``) if its document changed, and always
    when ``restored_from`` names the version this restores.
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
        agent.organization = organization
        before = _agent_document(agent)
        agent.default_decision = document.default
        agent.policy_lists = {name: list(items) for name, items in document.lists.items()}
        agent.save(update_fields=["default_decision", "policy_lists", "updated_at"])
        existing = {rule.name: rule for rule in Rule.objects.filter(agent=agent)}
        wanted = {spec.name for spec in document.rules}
        Rule.objects.filter(agent=agent).exclude(name__in=wanted).delete()
        rebuild: list[Rule] = []
        for position, spec in enumerate(document.rules):
            columns = _rule_columns(spec)
            rule = existing.get(spec.name)
            if rule is None:
                rule = Rule.objects.create(
                    organization=organization, agent=agent, position=position, **columns
                )
                new_series = spec.limit is not None
            else:
                new_series = _counts_anew(rule.document, columns["document"])
                for field, value in columns.items():
                    setattr(rule, field, value)
                rule.position = position
                rule.save()
            if new_series and spec.limit is not None:
                rebuild.append(rule)
        for rule in rebuild:
            _counters_recount(organization, agent, rule)
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
        _versions_record(
            organization=organization,
            agent=agent,
            actor=actor,
            source=source,
            note=note,
            restored_from=restored_from,
        )
    return agent


def policy_export(*, agent: Agent, format: str = "yaml") -> str:
    """The agent's own rules as a document that ``policy_import`` reads back unchanged."""
    lists = _agent_lists(agent)
    specs = [
        selectors.rule_spec(rule, lists=lists) for rule in agent.rules.order_by("position", "id")
    ]
    # str(): a just-created agent holds the TextChoices member, which YAML cannot represent.
    default = str(agent.default_decision)
    return dump_policy_document(agent.name, default, specs, format=format, lists=lists)


# --- Policy versions ------------------------------------------------------------------------
#
# A version is the agent's document (what GET .../policy answers, as JSON text) and the
# organisation-wide rules in force with it. It is written in the transaction of the change,
# after the change has bumped the agent's policy_revision: that UPDATE holds the agent's row
# until commit, so concurrent changes of one agent number their versions one after the other.
# A change that leaves both as they were (a PUT of the same document, a description edit)
# writes none; a restore always writes one.

MAX_NOTE_LENGTH = 1000
_SUMMARY_PARTS = 12


def _note_clean(note: object) -> str:
    if note is None:
        return ""
    if not isinstance(note, str):
        raise ValidationFailed("note must be a string.", field="note")
    if len(note) > MAX_NOTE_LENGTH:
        raise ValidationFailed(f"note must be at most {MAX_NOTE_LENGTH} characters.", field="note")
    if any(
        unicodedata.category(character) in _NAME_REFUSED_CATEGORIES and character not in "\n\t"
        for character in note
    ):
        raise ValidationFailed("note may not contain control characters.", field="note")
    return note.strip()


def _organization_rules_json(organization_id: int) -> str:
    """The organisation-wide rules in force, in order, each as its document writes it."""
    rules = Rule.objects.filter(organization_id=organization_id, agent__isnull=True).order_by(
        "position", "id"
    )
    mappings = [rule_to_mapping(selectors.rule_spec(rule, lists=None)) for rule in rules]
    return document_text(mappings, "json")


def _rules_summary(old: list[Any], new: list[Any], label: str) -> list[str]:
    old_by = {rule.get("name"): rule for rule in old if isinstance(rule, Mapping)}
    new_by = {rule.get("name"): rule for rule in new if isinstance(rule, Mapping)}
    parts = [f"{label} {name!r} added" for name in new_by if name not in old_by]
    parts += [f"{label} {name!r} deleted" for name in old_by if name not in new_by]
    for name, rule in new_by.items():
        before = old_by.get(name)
        if before is None or before == rule:
            continue
        was_on, is_on = before.get("enabled", True), rule.get("enabled", True)
        same_otherwise = {k: v for k, v in before.items() if k != "enabled"} == {
            k: v for k, v in rule.items() if k != "enabled"
        }
        if same_otherwise:
            parts.append(f"{label} {name!r} {'enabled' if is_on else 'disabled'}")
            continue
        keys = [*rule, *(key for key in before if key not in rule)]
        changed = ", ".join(
            key for key in keys if key != "enabled" and before.get(key) != rule.get(key)
        )
        toggled = f" and {'enabled' if is_on else 'disabled'}" if was_on != is_on else ""
        parts.append(f"{label} {name!r} changed ({changed}){toggled}")
    if not parts and [r.get("name") for r in old] != [r.get("name") for r in new]:
        parts.append(f"{label}s reordered")
    return parts


def _version_summary(
    previous: PolicyVersion | None, document: dict[str, Any], organization_rules: list[Any]
) -> str:
    """What changed since ``previous``, in words ("rule 'refund limit' disabled; ...")."""
    if previous is None:
        count = len(document.get("rules") or [])
        rules = f"{count} rule{'s' if count != 1 else ''}"
        return f"first version: {rules}, default {document.get('default')}"
    old = previous.document
    parts: list[str] = []
    if old.get("agent") != document.get("agent"):
        parts.append(f"agent renamed from {old.get('agent')!r} to {document.get('agent')!r}")
    if old.get("default") != document.get("default"):
        parts.append(f"default {old.get('default')} -> {document.get('default')}")
    old_lists, new_lists = old.get("lists") or {}, document.get("lists") or {}
    for name in new_lists:
        if name not in old_lists:
            parts.append(f"list {name!r} added")
        elif old_lists[name] != new_lists[name]:
            parts.append(f"list {name!r} changed")
    parts += [f"list {name!r} deleted" for name in old_lists if name not in new_lists]
    parts += _rules_summary(old.get("rules") or [], document.get("rules") or [], "rule")
    parts += _rules_summary(
        previous.organization_rules, organization_rules, "organisation-wide rule"
    )
    if len(parts) > _SUMMARY_PARTS:
        more = len(parts) - _SUMMARY_PARTS
        parts = [*parts[:_SUMMARY_PARTS], f"and {more} more change{'s' if more != 1 else ''}"]
    return "; ".join(parts) or "no change"


def _version_write(
    *,
    agent: Agent,
    organization_rules_json: str,
    actor: User | None,
    source: str,
    note: str,
    restored_from: int | None = None,
    own_rules_unchanged: bool = False,
) -> PolicyVersion | None:
    previous = PolicyVersion.objects.filter(agent_id=agent.pk).order_by("-number").first()
    if own_rules_unchanged and previous is not None:
        # An organisation-wide change: the agent's own document is its last version's (every
        # change of it writes one), so an organisation of many agents is not re-exported.
        document_json = previous.document_json
    else:
        document_json = policy_export(agent=agent, format="json")
    unchanged = previous is not None and (
        previous.document_json == document_json
        and previous.organization_rules_json == organization_rules_json
    )
    if unchanged and restored_from is None:
        return None
    summary = _version_summary(
        previous, json.loads(document_json), json.loads(organization_rules_json)
    )
    if restored_from is not None:
        summary = f"restored version {restored_from}" + (
            f": {summary}" if summary != "no change" else ""
        )
    return PolicyVersion.objects.create(
        agent=agent,
        number=previous.number + 1 if previous is not None else 1,
        document_json=document_json,
        organization_rules_json=organization_rules_json,
        actor_user=actor,
        actor_label=actor_label(user=actor, api_key=None)
        if actor is not None or source != "command"
        else "command",
        source=source,
        note=note,
        summary=summary,
        restored_from=restored_from,
    )


def _versions_record(
    *,
    organization: Organization,
    agent: Agent | None,
    actor: User | None,
    source: str,
    note: str,
    restored_from: int | None = None,
) -> None:
    """A new version for ``agent`` (or, for an organisation-wide change, for every agent of
    the organisation) whose policy the change altered. Call inside the change's transaction,
    after ``_policy_changed``."""
    note = _note_clean(note)
    organization_rules_json = _organization_rules_json(organization.pk)
    if agent is not None:
        agents = [Agent.objects.get(pk=agent.pk)]
    else:
        agents = list(Agent.objects.filter(organization=organization).order_by("pk"))
    for each in agents:
        each.organization = organization
        _version_write(
            agent=each,
            organization_rules_json=organization_rules_json,
            actor=actor,
            source=source,
            note=note,
            restored_from=restored_from,
            own_rules_unchanged=agent is None,
        )


def policy_version_restore(
    *, agent: Agent, number: int, actor: User | None, note: str = "", source: str = "api"
) -> PolicyVersion:
    """Make version ``number``'s document the agent's live policy again, through the same
    path as a PUT of it (validated against today's plan, running totals recounted where a
    limit changes), as a new version. The agent keeps its current name; the
    organisation-wide rules are the organisation's and stay as they are."""
    version = selectors.policy_version_get(agent=agent, number=number)
    note = _note_clean(note)
    mapping = {**version.document, "agent": agent.name}
    try:
        document = policy_document_parse(organization=agent.organization, text=mapping, format=None)
    except PolicyDocumentError as exc:
        raise policy_error_answer(exc) from None
    with transaction.atomic():
        policy_import(
            organization=agent.organization,
            document=document,
            actor=actor,
            agent=agent,
            source=source,
            note=note,
            restored_from=version.number,
        )
        return PolicyVersion.objects.filter(agent_id=agent.pk).order_by("-number").first()


def limit_counters_rebuild(*, agent: Agent) -> int:
    """Recompute every running total of ``agent`` from its audit log (the rebuild command).
    Checks that spend those budgets wait while it runs; returns the number of budgets."""
    agent.organization = Organization.objects.select_related("plan").get(pk=agent.organization_id)
    with transaction.atomic():
        count = limits.limit_counters_rebuild(agent=agent)
        if agent.rules.filter(counters_pending=True).update(counters_pending=False):
            _policy_changed(organization=agent.organization, agent=agent)
        audit_record_change(
            organization=agent.organization,
            actor_user=None,
            target=agent,
            verb="rebuilt running totals of",
            before=None,
            after={"budgets": count},
            source="command",
        )
    return count


def policy_rules_for_agent(agent: Agent) -> list[Rule]:
    return rule_list_for_agent(agent=agent)


def agent_simulate(
    *, agent: Agent, action: str, arguments: dict[str, Any], environment: str
) -> dict[str, Any]:
    """What a check of ``agent`` would answer now (decision, matched rules, reason).

    Records nothing: no audit row, no approval request, no running-total contribution.
    """
    problem = action_name_problem(action)
    if problem is not None:
        raise ValidationFailed(f"action {problem}.", field="action")
    if not isinstance(arguments, dict):
        raise ValidationFailed("arguments must be a JSON object.", field="arguments")
    if environment not in ApiKey.Environment.values:
        raise ValidationFailed("environment must be test or live.", field="environment")
    agent_rt = runtime.agent_runtime(agent.pk, agent.organization)
    if agent_rt is None:
        raise NotFound("No such agent.")
    return checks.simulate(
        agent_rt=agent_rt, action=action, arguments=arguments, environment=environment
    )


# --- Token usage ----------------------------------------------------------------------------

_MILLION = Decimal(1_000_000)


# --- The token price table (the operator's) ---------------------------------------------------

PRICE_FIELDS = ("model", "prompt_usd_per_million", "completion_usd_per_million")


def _price_audit(
    *,
    actor: User | None,
    price: ModelPrice,
    verb: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    source: str,
) -> None:
    """Prices belong to no organisation and price every organisation's token usage, so a
    change is recorded in every organisation's log."""
    audit_record_operator_change(
        organizations=Organization.objects.all(),
        actor_user=actor,
        target=price,
        target_id=price.model[:64],
        verb=verb,
        before=before,
        after=after,
        source=source,
    )


def _price_validate(price: ModelPrice) -> None:
    """The model's own field validators (no negative price), as ``ValidationFailed`` naming
    the first field with a problem."""
    try:
        price.full_clean(validate_unique=False)
    except DjangoValidationError as exc:
        field, problems = next(iter(exc.message_dict.items()))
        raise ValidationFailed(problems[0], field=field) from None


def model_price_create(
    *,
    actor: User | None,
    model: str,
    prompt_usd_per_million: Decimal,
    completion_usd_per_million: Decimal,
    source: str = "admin",
) -> ModelPrice:
    """Price a model's tokens (USD per million): staff in the admin."""
    operator_require(actor)
    price = ModelPrice(
        model=model,
        prompt_usd_per_million=prompt_usd_per_million,
        completion_usd_per_million=completion_usd_per_million,
    )
    _price_validate(price)
    with transaction.atomic():
        price.save()
        price.refresh_from_db()
        _price_audit(
            actor=actor,
            price=price,
            verb="created",
            before=None,
            after=model_snapshot(price, list(PRICE_FIELDS)),
            source=source,
        )
    return price


def model_price_update(
    *, actor: User | None, price: ModelPrice, source: str = "admin", **changes: Any
) -> ModelPrice:
    """Change a model's name or prices; usage already recorded keeps the cost it had."""
    operator_require(actor)
    unknown = set(changes) - set(PRICE_FIELDS)
    if unknown:
        raise ValidationFailed(f"Unknown field {sorted(unknown)[0]!r}.", field=sorted(unknown)[0])
    with transaction.atomic():
        price = ModelPrice.objects.select_for_update().get(pk=price.pk)
        before = model_snapshot(price, list(PRICE_FIELDS))
        for field, value in changes.items():
            setattr(price, field, value)
        _price_validate(price)
        price.save()
        price.refresh_from_db()
        after = model_snapshot(price, list(PRICE_FIELDS))
        if after != before:
            _price_audit(
                actor=actor, price=price, verb="updated", before=before, after=after, source=source
            )
    return price


def model_price_delete(*, actor: User | None, price: ModelPrice, source: str = "admin") -> None:
    """Stop pricing a model: its later usage costs 0 (and is named as unpriced)."""
    operator_require(actor)
    with transaction.atomic():
        price = ModelPrice.objects.select_for_update().get(pk=price.pk)
        before = model_snapshot(price, list(PRICE_FIELDS))
        _price_audit(
            actor=actor, price=price, verb="deleted", before=before, after=None, source=source
        )
        price.delete()


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
