"""Reading agents, keys and rules, always within one organisation (others get 404)."""

from __future__ import annotations

import difflib
import functools
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db.models import Count, Max, Q, QuerySet, Sum
from django.db.models.functions import TruncDay
from django.http import Http404

from accounts.models import Organization
from agents.models import Agent, ApiKey, PolicyVersion, Rule, TokenUsage
from agents.policy import BLOCK, ENFORCE, SHADOW, RuleSpec, action_pattern_is_valid
from agents.policy_document import PolicyDocumentError, document_text, rule_spec_from_mapping
from wardenproject.jsonutil import iso

logger = logging.getLogger(__name__)


def agent_list(*, organization: Organization) -> QuerySet[Agent]:
    return Agent.objects.filter(organization=organization).order_by("name")


def agent_list_with_stats(*, organization: Organization) -> QuerySet[Agent]:
    """Agents with ``rule_count`` (their own rules) and ``last_used_at`` (of any key)."""
    return agent_list(organization=organization).annotate(
        rule_count=Count("rules", distinct=True),
        last_used_at=Max("api_keys__last_used_at"),
    )


def agent_get(*, organization: Organization, ref: str) -> Agent:
    """An agent of ``organization`` by public id (``agt_...``) or name, or 404."""
    agent = (
        Agent.objects.select_related("organization__plan")
        .filter(organization=organization)
        .filter(Q(public_id=ref) | Q(name=ref))
        .order_by("-public_id")  # a public id match wins over a same-named agent
        .first()
    )
    if agent is None:
        raise Http404("No such agent.")
    return agent


def api_key_list(*, organization: Organization, agent: Agent | None = None) -> QuerySet[ApiKey]:
    keys = ApiKey.objects.filter(organization=organization).select_related("agent")
    if agent is not None:
        keys = keys.filter(agent=agent)
    return keys.order_by("-created_at", "-id")


def org_key_list(*, organization: Organization) -> QuerySet[ApiKey]:
    """The organisation's org keys and approver keys (not its agents' keys)."""
    return api_key_list(organization=organization).filter(
        kind__in=[ApiKey.Kind.ORG, ApiKey.Kind.APPROVER]
    )


def api_key_get(*, organization: Organization, public_id: str) -> ApiKey:
    try:
        return ApiKey.objects.select_related("agent", "organization").get(
            organization=organization, public_id=public_id
        )
    except ApiKey.DoesNotExist:
        raise Http404("No such key.") from None


def rule_list(*, organization: Organization, agent: Agent | None) -> QuerySet[Rule]:
    """Rules of ``agent`` only, or the organisation-wide rules when ``agent`` is None."""
    rules = Rule.objects.filter(organization=organization).select_related("agent")
    rules = rules.filter(agent=agent) if agent is not None else rules.filter(agent__isnull=True)
    return rules.order_by("position", "id")


def rule_list_for_agent(*, agent: Agent) -> list[Rule]:
    """Every rule that applies to ``agent``: its own, then the organisation's."""
    rules = Rule.objects.filter(organization_id=agent.organization_id).filter(
        Q(agent=agent) | Q(agent__isnull=True)
    )
    return sorted(rules, key=lambda r: (r.agent_id is None, r.position, r.id))


def rule_get(*, organization: Organization, public_id: str, agent: Agent | None = None) -> Rule:
    rules = Rule.objects.select_related("agent").filter(organization=organization)
    if agent is not None:
        rules = rules.filter(agent=agent)
    rule = rules.filter(public_id=public_id).first()
    if rule is None:
        raise Http404("No such rule.")
    return rule


def rule_spec(rule: Rule, *, lists: Mapping[str, Any] | None) -> RuleSpec:
    """A stored rule as the evaluator's RuleSpec, validated as every rule is. A rule that no
    longer validates (edited by hand in the database, or naming a list that is gone) fails
    closed: it blocks its action pattern (every action if the pattern itself is broken)."""
    scope = "agent" if rule.agent_id else "org"
    try:
        return rule_spec_from_mapping(
            rule.document,
            lists=_lists_tuples(lists) if scope == "agent" else None,
            id=rule.public_id,
            position=rule.position,
            scope=scope,
        )
    except PolicyDocumentError as exc:
        logger.error("rule %s does not validate, blocking its actions: %s", rule.public_id, exc)
        pattern = rule.action_pattern if action_pattern_is_valid(rule.action_pattern) else "*"
        return RuleSpec(
            id=rule.public_id,
            name=rule.name or rule.public_id,
            action=pattern,
            effect=BLOCK,
            message="This rule is invalid and blocks its actions until it is fixed.",
            # A shadow rule never decides: broken, it still only records (a block).
            mode=SHADOW if (rule.document or {}).get("mode") == SHADOW else ENFORCE,
            position=rule.position,
            scope=scope,
        )


def _lists_tuples(lists: Mapping[str, Any] | None) -> dict[str, tuple[Any, ...]]:
    return {
        name: tuple(items)
        for name, items in (lists or {}).items()
        if isinstance(name, str) and isinstance(items, list)
    }


@functools.lru_cache(maxsize=512)
def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        logger.error("unknown time zone %r, using UTC", name)
        return UTC


def organization_tz(organization: Organization) -> tzinfo:
    """The organisation's time zone (rules read $time.hour and $time.weekday in it)."""
    return _zone(organization.time_zone or "UTC")


def rule_detail(rule: Rule) -> dict[str, Any]:
    """The API view of a rule: its document form plus identity and scope."""
    return {
        "id": rule.public_id,
        "scope": "agent" if rule.agent_id else "org",
        "agent_id": rule.agent.public_id if rule.agent_id else None,
        **rule.document,
        "position": rule.position,
        "created_at": rule.created_at.isoformat(),
        "updated_at": rule.updated_at.isoformat(),
    }


def agent_detail(agent: Agent) -> dict[str, Any]:
    return {
        "id": agent.public_id,
        "name": agent.name,
        "description": agent.description,
        "is_active": agent.is_active,
        "default": agent.default_decision,
        "enforcement": agent.enforcement,
        "policy_revision": agent.policy_revision,
        "created_at": agent.created_at.isoformat(),
    }


def api_key_detail(api_key: ApiKey) -> dict[str, Any]:
    return {
        "id": api_key.public_id,
        "name": api_key.name,
        "kind": api_key.kind,
        "environment": api_key.environment,
        "agent_id": api_key.agent.public_id if api_key.agent_id else None,
        "prefix": api_key.prefix,
        "created_at": iso(api_key.created_at),
        "last_used_at": iso(api_key.last_used_at),
        "revoked_at": iso(api_key.revoked_at),
        "expires_at": iso(api_key.expires_at),
        "replaced_by": api_key.replaced_by.public_id if api_key.replaced_by_id else None,
        "usable": api_key.is_usable(),
    }


TOKEN_USAGE_GROUPS = {"model": "model", "day": "day", "session": "session_id"}


def token_usage_summary(
    *, organization: Organization, agent_id: int | None, group_by: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Token usage grouped by model, day or session (one agent's, or the organisation's),
    with totals. ``group_by`` must be a key of TOKEN_USAGE_GROUPS."""
    column = TOKEN_USAGE_GROUPS[group_by]
    usage = TokenUsage.objects.filter(organization=organization)
    if agent_id is not None:
        usage = usage.filter(agent_id=agent_id)
    if group_by == "day":
        usage = usage.annotate(day=TruncDay("created_at"))
    rows = (
        usage.values(column)
        .annotate(
            calls=Count("id"),
            prompt_tokens=Sum("prompt_tokens"),
            completion_tokens=Sum("completion_tokens"),
            total_tokens=Sum("total_tokens"),
            cost_usd=Sum("cost_usd"),
        )
        .order_by(column)
    )
    results: list[dict[str, Any]] = []
    totals: dict[str, Any] = defaultdict(int)
    for row in rows:
        key = row[column]
        if group_by == "day":
            key = key.date().isoformat() if key else None
        cost = row["cost_usd"] or Decimal(0)
        results.append(
            {
                group_by: key,
                "calls": row["calls"],
                "prompt_tokens": row["prompt_tokens"],
                "completion_tokens": row["completion_tokens"],
                "total_tokens": row["total_tokens"],
                "total_cost_usd": float(cost),
            }
        )
        totals["calls"] += row["calls"]
        totals["total_tokens"] += row["total_tokens"]
        totals["total_cost_usd"] += float(cost)
    return results, dict(totals)


# --- Policy versions ------------------------------------------------------------------------

VERSION_PAGE_SIZE = 20
MAX_VERSION_PAGE_SIZE = 100


def policy_version_get(*, agent: Agent, number: int) -> PolicyVersion:
    """Version ``number`` of ``agent`` (an agent already found in the caller's organisation),
    or 404."""
    version = (
        PolicyVersion.objects.select_related("actor_user")
        .filter(agent_id=agent.pk, number=number)
        .first()
    )
    if version is None:
        raise Http404("No such policy version.")
    return version


def policy_version_page(
    *, agent: Agent, before: int | None = None, limit: int = VERSION_PAGE_SIZE
) -> tuple[list[PolicyVersion], int | None]:
    """A page of the agent's versions, newest first, numbered below ``before`` (keyset: the
    (agent, number) index, the same cost on any page), and the ``before`` of the next page
    (None on the last)."""
    versions = PolicyVersion.objects.filter(agent_id=agent.pk)
    if before is not None:
        versions = versions.filter(number__lt=before)
    page = list(versions.select_related("actor_user").order_by("-number")[: limit + 1])
    if len(page) > limit:
        return page[:limit], page[limit - 1].number
    return page, None


def policy_version_latest_number(*, agent: Agent) -> int | None:
    return (
        PolicyVersion.objects.filter(agent_id=agent.pk)
        .order_by("-number")
        .values_list("number", flat=True)
        .first()
    )


def policy_version_entry(version: PolicyVersion) -> dict[str, Any]:
    """A version as the list shows it: who, when, why, what changed (no document)."""
    return {
        "number": version.number,
        "created_at": iso(version.created_at),
        "actor": version.actor_label or None,
        "source": version.source,
        "note": version.note or None,
        "summary": version.summary,
        "restored_from": version.restored_from,
    }


def policy_version_text(version: PolicyVersion | None, format: str = "yaml") -> str:
    """The version's document, written as ``GET .../policy`` writes it ('' for None)."""
    if version is None:
        return ""
    if format == "json":
        return version.document_json
    return document_text(version.document, format)


def _organization_rules_text(version: PolicyVersion | None) -> str:
    if version is None or not version.organization_rules:
        return ""
    return document_text(version.organization_rules, "yaml")


def policy_version_diff(*, version: PolicyVersion, against: PolicyVersion | None) -> str:
    """A unified diff from ``against`` (None: nothing) to ``version``: of their YAML
    documents, then, if they differ, of the organisation-wide rules in force with them.
    Empty when the two are the same."""
    old_label = f"version {against.number}" if against is not None else "nothing"
    new_label = f"version {version.number}"
    parts = [
        difflib.unified_diff(
            policy_version_text(against).splitlines(keepends=True),
            policy_version_text(version).splitlines(keepends=True),
            fromfile=f"{old_label}: policy",
            tofile=f"{new_label}: policy",
        ),
        difflib.unified_diff(
            _organization_rules_text(against).splitlines(keepends=True),
            _organization_rules_text(version).splitlines(keepends=True),
            fromfile=f"{old_label}: organisation-wide rules",
            tofile=f"{new_label}: organisation-wide rules",
        ),
    ]
    out: list[str] = []
    for diff in parts:
        for line in diff:
            out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


def rules_routing_warnings(
    *, organization: Organization, rules: Iterable[tuple[str, Mapping[str, Any]]]
) -> list[str]:
    """Warnings about rules whose approval block names a group the organisation does not
    have: such a reference admits nobody (routing fails closed), which is rarely meant.

    ``rules``: (rule name, its ``approval`` block as a mapping).
    """
    from approvals.routing import unknown_groups

    warnings = []
    for name, approval in rules:
        references = [*(approval.get("approvers") or ()), *(approval.get("escalate_to") or ())]
        for group in unknown_groups(organization_id=organization.pk, references=references):
            warnings.append(
                f"Rule {name!r}: group:{group} is not a group of this organisation, so nobody "
                "decides its approvals through it (create the group or correct the name)."
            )
    return warnings


def policy_routing_warnings(*, organization: Organization, rules: Iterable[RuleSpec]) -> list[str]:
    """``rules_routing_warnings`` for validated rules (a policy document being imported)."""
    return rules_routing_warnings(
        organization=organization,
        rules=(
            (spec.name, {"approvers": spec.approvers, "escalate_to": spec.escalate_to})
            for spec in rules
        ),
    )
