"""Forms of the agent pages: they parse what a person typed into the mappings the services
take (policy-document keys for rules), and put the services' errors back on the right field.

Validation of meaning (patterns, operators, durations, plan gates) stays in the services.
"""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta
from typing import Any

import yaml
from django import forms
from django.utils import timezone

from agents.models import Agent, ApiKey, Rule
from agents.policy import ENFORCE, ENVIRONMENTS, OPS, SHADOW
from agents.policy_document import (
    GRANT_KINDS,
    Path,
    PolicyDocumentError,
    load_text,
    path_parts,
    path_text,
)
from audit.models import AuditEntry
from audit.selectors import AuditFilters
from wardenproject.errors import DomainError

GRACE_CHOICES = [
    (0, "No grace: old key stops now"),
    (3600, "Old key valid 1 hour"),
    (86400, "Old key valid 24 hours"),
    (7 * 86400, "Old key valid 7 days"),
]
ENVIRONMENT_CHOICES = [(env, env) for env in sorted(ENVIRONMENTS)]
# Checks record the policy's answer; approval entries record what a person (or time) did.
AUDIT_DECISIONS = [
    ("", "Any decision"),
    *Rule.Effect.choices,
    ("approve", "Approved"),
    ("deny", "Denied"),
    ("expire", "Expired"),
    ("cancel", "Cancelled"),
]
LIMIT_KINDS = [("", "No running total"), ("count", "Count of calls"), ("sum", "Sum of a field")]
RULE_MODES = [(ENFORCE, "Enforce"), (SHADOW, "Shadow (record only)")]


class AgentCreateForm(forms.Form):
    name = forms.CharField(max_length=120)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    default_decision = forms.ChoiceField(
        choices=Agent.DefaultDecision.choices,
        initial=Agent.DefaultDecision.ALLOW,
        label="When no rule matches",
    )


class AgentSettingsForm(AgentCreateForm):
    enforcement = forms.ChoiceField(
        choices=Agent.Enforcement.choices,
        initial=Agent.Enforcement.ENFORCE,
        required=False,
        label="Enforcement",
        help_text="Log only: every call is allowed; each answer's reason and the audit log "
        "say what would have happened.",
    )
    is_active = forms.BooleanField(required=False, label="Active (checks are answered)")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if not cleaned.get("enforcement"):
            cleaned.pop("enforcement", None)  # not sent: left as it is
        return cleaned


class KeyCreateForm(forms.Form):
    environment = forms.ChoiceField(choices=ApiKey.Environment.choices)
    name = forms.CharField(max_length=120, required=False)


class OrgKeyCreateForm(forms.Form):
    kind = forms.ChoiceField(
        choices=[(ApiKey.Kind.ORG, "Organisation key"), (ApiKey.Kind.APPROVER, "Approver key")]
    )
    name = forms.CharField(max_length=120, required=False)


class KeyRotateForm(forms.Form):
    grace_seconds = forms.TypedChoiceField(
        choices=GRACE_CHOICES, coerce=int, initial=3600, label="Old key valid for"
    )


class PolicyForm(forms.Form):
    document = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 14, "spellcheck": "false"}), label="Policy (YAML)"
    )
    note = forms.CharField(
        required=False,
        max_length=1000,
        label="Note (optional)",
        help_text="Kept with the policy version this makes.",
    )


class PolicyVersionRestoreForm(forms.Form):
    note = forms.CharField(
        required=False,
        max_length=1000,
        label="Note (optional)",
        widget=forms.TextInput(attrs={"size": 60}),
        help_text="Why: kept with the new version.",
    )


class BacktestForm(forms.Form):
    """The policy editor's "Test against the last 7 days": the editor's text, unsaved."""

    document = forms.CharField(widget=forms.Textarea, label="Policy (YAML)")
    days = forms.TypedChoiceField(
        choices=[(1, "1 day"), (7, "7 days"), (30, "30 days")], coerce=int, initial=7
    )


class SimulateForm(forms.Form):
    action = forms.CharField(max_length=200, widget=forms.TextInput(attrs={"size": 30}))
    arguments = forms.CharField(
        required=False,
        initial="{}",
        widget=forms.Textarea(attrs={"rows": 5, "spellcheck": "false"}),
        label="Arguments (JSON object)",
    )
    environment = forms.ChoiceField(choices=ApiKey.Environment.choices, initial="live")

    def clean_arguments(self) -> dict[str, Any]:
        text = self.cleaned_data["arguments"].strip() or "{}"
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("Arguments must be a JSON object, like {}.")
        return value


# --- Rules ----------------------------------------------------------------------------------


def _condition_value(text: str) -> Any:
    """JSON when it reads as JSON (numbers, true, "quoted", [lists]), otherwise the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _condition_value_text(value: Any) -> str:
    if isinstance(value, str) and value == value.strip() and value:
        try:
            json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, ensure_ascii=False)


def _is_line_syntax(text: str) -> bool:
    """``field op value`` lines, as opposed to YAML or JSON (any/all/not, lists of maps)."""
    first = text.strip().splitlines()[0].strip()
    return not (first.startswith(("[", "{", "- ")) or first.split(None, 1)[0].endswith(":"))


def conditions_parse(text: str) -> tuple[Any, dict[Path, int]] | None:
    """Conditions as a person types them, with the line of each part (for error messages):
    ``field op value`` per line (all must hold), or YAML/JSON with ``any:``, ``all:`` and
    ``not:`` nested as in a policy document. None when empty."""
    text = text.strip()
    if not text:
        return None
    if not _is_line_syntax(text):
        try:
            return load_text(text, "yaml")
        except PolicyDocumentError as exc:
            raise forms.ValidationError("; ".join(str(error) for error in exc.errors)) from None
    conditions: list[dict[str, Any]] = []
    lines: dict[Path, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        parts = line.split(None, 2)
        if len(parts) == 2 and parts[1] == "exists":
            parts.append("true")
        if len(parts) < 3:
            raise forms.ValidationError(
                f"Line {number}: write field, operator and value, like customer.tier ne vip "
                "(or YAML with any:, all: and not:)."
            )
        field, op, value = parts
        lines[(len(conditions),)] = number
        conditions.append({"field": field, "op": op, "value": _condition_value(value)})
    return conditions, lines


def conditions_text(conditions: Any) -> str:
    """The conditions of a stored rule as the form shows them: lines when they are a plain
    list of comparisons, YAML otherwise."""
    if not conditions:
        return ""
    plain = isinstance(conditions, list) and all(
        isinstance(c, dict) and set(c) == {"field", "op", "value"} for c in conditions
    )
    if plain:
        return "\n".join(
            f"{c['field']} {c['op']} {_condition_value_text(c['value'])}" for c in conditions
        )
    return yaml.safe_dump(conditions, sort_keys=False, allow_unicode=True, width=100).strip()


def rule_conditions_text(document: dict[str, Any]) -> str:
    """A rule's when and unless as the rules table shows them."""
    parts = []
    if document.get("when"):
        parts.append(conditions_text(document["when"]))
    if document.get("unless"):
        parts.append("unless:\n" + conditions_text(document["unless"]))
    return "\n".join(parts)


# Where a service error about a document key belongs on this form.
_RULE_ERROR_FIELDS = {
    "limit": "limit_kind",
    "limit.count": "limit_count",
    "limit.sum": "limit_sum",
    "limit.over": "limit_over",
    "limit.per": "limit_per",
    "limit.by": "limit_by",
    "approval": "approval_timeout",
    "approval.timeout": "approval_timeout",
    "approval.approvals_required": "approvals_required",
    "approval.approvers": "approvers",
    "approval.on_timeout": "on_timeout",
    "approval.escalate_to": "escalate_to",
    "approval.escalate_timeout": "escalate_timeout",
    "approval.slack_channel": "slack_channel",
    "approval.redact": "redact",
    "approval.grants": "grants",
}
_PLAN_FEATURE_FIELDS = {"approval_workflows": "effect", "approval_quorum": "approvals_required"}
_CONDITIONS_HELP = (
    "One per line: field op value (customer.tier ne vip); all must hold. For any/all/not, "
    "write YAML as in a policy document (docs/POLICY.md). Operators: " + " ".join(OPS) + "."
)


class RuleForm(forms.Form):
    name = forms.CharField(max_length=120)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    action = forms.CharField(
        max_length=200,
        label="Action pattern",
        help_text="stripe.refund, stripe.refund.*, database.*.delete or * (any case)",
    )
    effect = forms.ChoiceField(choices=Rule.Effect.choices)
    message = forms.CharField(
        required=False,
        max_length=1000,
        label="Message",
        help_text="Shown to the agent and to reviewers when this rule decides.",
    )
    when = forms.CharField(
        required=False,
        label="Conditions (when)",
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
        help_text=_CONDITIONS_HELP,
    )
    unless = forms.CharField(
        required=False,
        label="Exceptions (unless)",
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false"}),
        help_text="The rule does not apply when any of these holds (same syntax).",
    )
    max_amount = forms.CharField(
        required=False, label="Max amount", help_text="At or under: allowed by this rule."
    )
    amount_field = forms.CharField(required=False, initial="amount", label="Amount field")
    limit_kind = forms.ChoiceField(choices=LIMIT_KINDS, required=False, label="Running total")
    limit_count = forms.IntegerField(required=False, label="More than N calls")
    limit_sum = forms.CharField(required=False, label="Sum of field")
    limit_over = forms.CharField(required=False, label="Over")
    limit_per = forms.CharField(required=False, label="Per window", help_text="1h, 1d …")
    limit_by = forms.CharField(
        required=False,
        label="One budget per",
        help_text="Optional: a field (customer_id) or $session",
    )
    environments = forms.MultipleChoiceField(
        choices=ENVIRONMENT_CHOICES,
        initial=sorted(ENVIRONMENTS),
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose test, live or both."},
    )
    approval_timeout = forms.CharField(
        required=False, label="Approval timeout", help_text="e.g. 30m; empty: the org default"
    )
    approvals_required = forms.IntegerField(min_value=1, initial=1, label="Approvals required")
    approvers = forms.CharField(
        required=False,
        label="Approvers",
        help_text="Who may decide, comma-separated: role:admin, group:finance, "
        "user:alice@example.com; empty: every member who may decide",
    )
    on_timeout = forms.ChoiceField(
        choices=[("deny", "Deny"), ("escalate", "Escalate")],
        initial="deny",
        required=False,
        label="On timeout",
    )
    escalate_to = forms.CharField(
        required=False, label="Escalate to", help_text="Approvers, as above"
    )
    escalate_timeout = forms.CharField(
        required=False, label="Escalation timeout", help_text="e.g. 30m"
    )
    slack_channel = forms.CharField(
        required=False, label="Slack channel", help_text="#finance-approvals; empty: the default"
    )
    redact = forms.CharField(
        required=False,
        label="Hide from Slack and email",
        help_text="Argument paths, comma-separated: card_number, customer.email",
    )
    grants = forms.MultipleChoiceField(
        choices=[(kind, kind) for kind in GRANT_KINDS],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Approvers may remember",
        help_text="identical: the same call; session: the agent's session; amount: up to an amount",
    )
    enabled = forms.BooleanField(required=False, initial=True)
    mode = forms.ChoiceField(
        choices=RULE_MODES,
        initial=ENFORCE,
        required=False,
        label="Mode",
        help_text="Shadow: evaluated on every call and recorded, never part of the answer.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("prefix", "rule")
        super().__init__(*args, **kwargs)
        self.condition_lines: dict[str, dict[Path, int]] = {}

    @classmethod
    def from_document(cls, mapping: dict[str, Any]) -> RuleForm:
        """An unbound form showing a stored rule (its policy-document mapping)."""
        limit = mapping.get("limit") or {}
        approval = mapping.get("approval") or {}
        initial = {
            "name": mapping.get("name", ""),
            "description": mapping.get("description", ""),
            "action": mapping.get("action", ""),
            "effect": mapping.get("effect"),
            "message": mapping.get("message", ""),
            "when": conditions_text(mapping.get("when")),
            "unless": conditions_text(mapping.get("unless")),
            "max_amount": mapping.get("max_amount", ""),
            "amount_field": mapping.get("amount_field", "amount"),
            "limit_kind": "count" if "count" in limit else "sum" if "sum" in limit else "",
            "limit_count": limit.get("count"),
            "limit_sum": limit.get("sum", ""),
            "limit_over": limit.get("over", ""),
            "limit_per": limit.get("per", ""),
            "limit_by": limit.get("by", ""),
            "environments": mapping.get("environments") or sorted(ENVIRONMENTS),
            "approval_timeout": approval.get("timeout", ""),
            "approvals_required": approval.get("approvals_required", 1),
            "approvers": ", ".join(approval.get("approvers", ())),
            "on_timeout": approval.get("on_timeout", "deny"),
            "escalate_to": ", ".join(approval.get("escalate_to", ())),
            "escalate_timeout": approval.get("escalate_timeout", ""),
            "slack_channel": approval.get("slack_channel", ""),
            "redact": ", ".join(approval.get("redact", ())),
            "grants": list(approval.get("grants", ())),
            "enabled": mapping.get("enabled", True),
            "mode": mapping.get("mode", ENFORCE),
        }
        return cls(initial=initial)

    def _conditions(self, name: str) -> Any:
        parsed = conditions_parse(self.cleaned_data[name])
        if parsed is None:
            return None
        data, lines = parsed
        self.condition_lines[name] = lines
        return data

    def clean_when(self) -> Any:
        return self._conditions("when")

    def clean_unless(self) -> Any:
        return self._conditions("unless")

    def rule_changes(self) -> dict[str, Any]:
        """Every document key; None for the optional ones left empty (which removes them)."""
        data = self.cleaned_data
        limit: dict[str, Any] | None = None
        if data["limit_kind"] == "count":
            limit = {"count": data["limit_count"], "per": data["limit_per"].strip() or None}
        elif data["limit_kind"] == "sum":
            limit = {
                "sum": data["limit_sum"].strip() or None,
                "over": data["limit_over"].strip() or None,
                "per": data["limit_per"].strip() or None,
            }
        if limit is not None:
            if data["limit_by"].strip():
                limit["by"] = data["limit_by"].strip()
            # Left out rather than null, so the service says "is required".
            limit = {k: v for k, v in limit.items() if v is not None or k not in ("per", "over")}
        approval: dict[str, Any] = {}
        if data["approval_timeout"].strip():
            approval["timeout"] = data["approval_timeout"].strip()
        if data["approvals_required"] != 1:
            approval["approvals_required"] = data["approvals_required"]
        for key in ("approvers", "escalate_to", "redact"):
            items = [item.strip() for item in data[key].split(",") if item.strip()]
            if items:
                approval[key] = items
        if data["on_timeout"] == "escalate":
            approval["on_timeout"] = "escalate"
        for key in ("escalate_timeout", "slack_channel"):
            if data[key].strip():
                approval[key] = data[key].strip()
        if data["grants"]:
            approval["grants"] = list(data["grants"])
        return {
            "name": data["name"].strip(),
            "description": data["description"] or None,
            "action": data["action"].strip(),
            "effect": data["effect"],
            "message": data["message"].strip() or None,
            "when": data["when"],
            "unless": data["unless"],
            "max_amount": data["max_amount"].strip() or None,
            "amount_field": data["amount_field"].strip() or "amount",
            "limit": limit,
            "approval": approval or None,
            "environments": sorted(data["environments"]),
            "enabled": data["enabled"],
            "mode": SHADOW if data["mode"] == SHADOW else None,
        }

    def rule_data(self) -> dict[str, Any]:
        """The document mapping of a new rule (empty optional keys left out)."""
        return {key: value for key, value in self.rule_changes().items() if value is not None}

    def add_service_error(self, error: DomainError) -> None:
        """Show a service refusal on the field it names (every one of a rule's problems),
        with its path in the conditions and its line there."""
        problems = error.extra.get("errors") or [{"field": error.field, "message": None}]
        for problem in problems:
            message = problem.get("message") or error.detail
            path = problem.get("field") or ""
            parts = path_parts(path) if path else ()
            head = parts[0] if parts else ""
            if head in ("when", "unless"):
                line = _line_of(self.condition_lines.get(head, {}), parts[1:])
                where = f"{path} (line {line})" if line is not None else path
                self.add_error(head, f"{where}: {message}")
                continue
            key = path_text(tuple(p for p in parts if isinstance(p, str)))
            field = _RULE_ERROR_FIELDS.get(key, str(head))
            field = field or _PLAN_FEATURE_FIELDS.get(error.extra.get("feature", ""), "")
            if field == "default":
                field = ""
            self.add_error(field if field in self.fields else None, message)


def _line_of(lines: dict[Path, int], parts: Path) -> int | None:
    for end in range(len(parts), -1, -1):
        line = lines.get(tuple(parts[:end]))
        if line is not None:
            return line
    return None


# --- Audit filters --------------------------------------------------------------------------


class AuditFilterForm(forms.Form):
    kind = forms.ChoiceField(choices=[("", "Any kind"), *AuditEntry.Kind.choices], required=False)
    agent = forms.ChoiceField(choices=[("", "Any agent")], required=False)
    action = forms.CharField(required=False, max_length=200)
    decision = forms.ChoiceField(choices=AUDIT_DECISIONS, required=False)
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Inclusive.",
    )

    def __init__(self, *args: Any, agents: list[Agent], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["agent"].choices = [
            ("", "Any agent"),
            *[(agent.public_id, agent.name) for agent in agents],
        ]

    def filters(self) -> AuditFilters:
        if not self.is_valid():
            return AuditFilters()
        data = self.cleaned_data
        return AuditFilters(
            kind=data["kind"] or None,
            agent_public_id=data["agent"] or None,
            action=data["action"].strip() or None,
            decision=data["decision"] or None,
            since=_day_start(data["since"]),
            until=_day_start(data["until"], days_after=1),
        )

    def export_query(self) -> dict[str, str]:
        """The filters the export API understands (it has no action or decision filter)."""
        filters = self.filters()
        query = {}
        if filters.kind:
            query["kind"] = filters.kind
        if filters.agent_public_id:
            query["agent"] = filters.agent_public_id
        if filters.since:
            query["since"] = filters.since.isoformat()
        if filters.until:
            query["until"] = filters.until.isoformat()
        return query


def _day_start(day: Any, days_after: int = 0) -> datetime | None:
    if day is None:
        return None
    return timezone.make_aware(datetime.combine(day + timedelta(days=days_after), time.min))
