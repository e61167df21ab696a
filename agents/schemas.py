"""Serializers that describe the native API in the OpenAPI schema (documentation only: the
views validate input with agents.http so every error has the same {code, detail, field})."""

from __future__ import annotations

from rest_framework import serializers

# The tags of the wire-compatible endpoints (docs/API.md, "Wire contract") in the schema.
ARDEN_TAG = "Arden SDK (compatible)"
AGENTWARDEN_TAG = "AgentWarden SDK (compatible)"


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Machine-readable: invalid, not_found, forbidden...")
    detail = serializers.CharField(help_text="In plain words.")
    field = serializers.CharField(allow_null=True, help_text="The field at fault, if one is.")


# Every error status an endpoint may answer, each with the one error body.
ERRORS = {code: ErrorSerializer for code in (400, 401, 402, 403, 404, 409, 413, 429, 503)}


class CheckRequestSerializer(serializers.Serializer):
    action = serializers.CharField(max_length=200, help_text="e.g. stripe.refund")
    arguments = serializers.DictField(required=False, help_text="The tool call's arguments.")
    session_id = serializers.CharField(required=False, allow_null=True, max_length=200)
    metadata = serializers.DictField(required=False, allow_null=True)
    agent = serializers.CharField(
        required=False, help_text="Org keys only: the agent's agt_ id or name."
    )


class CheckResponseSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(["allow", "requires_approval", "block"])
    action_id = serializers.CharField()
    status = serializers.ChoiceField(["allowed", "blocked", "pending"])
    reason = serializers.CharField()
    rule = serializers.CharField(allow_null=True)
    message = serializers.CharField(allow_null=True)
    environment = serializers.ChoiceField(["test", "live"])
    expires_at = serializers.DateTimeField(allow_null=True)


class OutcomeSerializer(serializers.Serializer):
    status = serializers.CharField()
    error = serializers.CharField(allow_null=True, required=False)
    at = serializers.DateTimeField()


class ApprovalVoteSerializer(serializers.Serializer):
    by = serializers.CharField()
    at = serializers.DateTimeField()
    notes = serializers.CharField(allow_null=True)


class ExplanationSerializer(serializers.Serializer):
    recorded = serializers.BooleanField(help_text="False for checks recorded before traces.")
    lines = serializers.ListField(child=serializers.CharField(), help_text="In plain words.")
    text = serializers.CharField(help_text="The lines joined with '; '.")
    trace = serializers.JSONField(allow_null=True, help_text="The evaluation trace (docs/API.md).")


class ActionSerializer(serializers.Serializer):
    action_id = serializers.CharField()
    agent_id = serializers.CharField()
    action = serializers.CharField()
    arguments = serializers.DictField()
    decision = serializers.CharField()
    status = serializers.ChoiceField(
        ["allowed", "blocked", "pending", "approved", "denied", "expired", "cancelled"]
    )
    reason = serializers.CharField()
    rule = serializers.CharField(allow_null=True)
    policy_version = serializers.IntegerField(
        allow_null=True, help_text="The agent's policy version that decided the call."
    )
    environment = serializers.CharField()
    session_id = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    decided_at = serializers.DateTimeField(allow_null=True)
    decided_by = serializers.CharField(allow_null=True)
    notes = serializers.CharField(allow_null=True)
    approvals = ApprovalVoteSerializer(many=True)
    approvals_required = serializers.IntegerField(allow_null=True)
    claimed_at = serializers.DateTimeField(allow_null=True)
    outcome = OutcomeSerializer(allow_null=True)
    shadow = serializers.ListField(
        child=serializers.DictField(),
        help_text="The shadow rules that applied: {rule, rule_id, decision, reason}, decision "
        "being the answer with that rule enforcing.",
    )
    log_only = serializers.DictField(
        allow_null=True,
        help_text="A log-only agent's call that the policy did not allow: {decision, reason}.",
    )
    explanation = ExplanationSerializer()


class OutcomeRequestSerializer(serializers.Serializer):
    status = serializers.ChoiceField(["success", "failed", "blocked"])
    error = serializers.CharField(required=False, allow_null=True)
    result = serializers.JSONField(required=False)


class OutcomeResponseSerializer(serializers.Serializer):
    action_id = serializers.CharField()
    outcome = OutcomeSerializer()


class AgentSerializer(serializers.Serializer):
    id = serializers.CharField(read_only=True)
    name = serializers.CharField()
    description = serializers.CharField(required=False)
    is_active = serializers.BooleanField(required=False)
    default = serializers.ChoiceField(["allow", "block"], required=False)
    enforcement = serializers.ChoiceField(
        ["enforce", "log_only"],
        required=False,
        help_text="log_only: every call is allowed; the reason says what would have happened.",
    )
    policy_revision = serializers.IntegerField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)


class AgentListSerializer(serializers.Serializer):
    results = AgentSerializer(many=True)


class RuleSerializer(serializers.Serializer):
    id = serializers.CharField(read_only=True)
    scope = serializers.ChoiceField(["agent", "org"], read_only=True)
    agent_id = serializers.CharField(read_only=True, allow_null=True)
    name = serializers.CharField()
    description = serializers.CharField(required=False)
    action = serializers.CharField(help_text="stripe.refund, stripe.refund.*, database.*.delete, *")
    effect = serializers.ChoiceField(["allow", "requires_approval", "block"])
    message = serializers.CharField(
        required=False, help_text="Shown to the agent and to reviewers when this rule decides."
    )
    when = serializers.JSONField(
        required=False,
        help_text="A list of conditions {field, op, value} that must all hold, or "
        "{any: [...]}, {all: [...]}, {not: ...} nested (docs/POLICY.md).",
    )
    unless = serializers.ListField(
        child=serializers.JSONField(),
        required=False,
        help_text="Exceptions: the rule does not apply when any of them holds.",
    )
    max_amount = serializers.DecimalField(max_digits=20, decimal_places=4, required=False)
    amount_field = serializers.CharField(required=False)
    limit = serializers.DictField(
        required=False, help_text="{count, per, by?} or {sum, over, per, by?}"
    )
    approval = serializers.DictField(required=False, help_text="{timeout, approvals_required}")
    environments = serializers.ListField(child=serializers.CharField(), required=False)
    enabled = serializers.BooleanField(required=False)
    mode = serializers.ChoiceField(
        ["enforce", "shadow"],
        required=False,
        help_text="shadow: evaluated and recorded on every call, never part of the answer.",
    )
    position = serializers.IntegerField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)


class RuleDetailSerializer(RuleSerializer):
    # Not read-only: drf-spectacular makes every read-only field required, and only a shadow
    # rule's answer has this one (the serializer is used for answers only).
    shadow = serializers.DictField(
        required=False,
        help_text="Shadow rules only: as_of, and for 1d, 7d and 30d the calls the rule "
        "matched, the answers it would have changed and their transitions.",
    )


class RuleListSerializer(serializers.Serializer):
    results = RuleSerializer(many=True)


class ApiKeySerializer(serializers.Serializer):
    id = serializers.CharField(read_only=True)
    name = serializers.CharField(required=False)
    kind = serializers.ChoiceField(["agent", "org", "approver"])
    environment = serializers.ChoiceField(["test", "live"], required=False)
    agent_id = serializers.CharField(required=False, allow_null=True)
    prefix = serializers.CharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    last_used_at = serializers.DateTimeField(read_only=True, allow_null=True)
    revoked_at = serializers.DateTimeField(read_only=True, allow_null=True)
    expires_at = serializers.DateTimeField(read_only=True, allow_null=True)
    replaced_by = serializers.CharField(
        read_only=True, allow_null=True, help_text="The key that replaced this one, if rotated."
    )
    usable = serializers.BooleanField(read_only=True)


class CreatedApiKeySerializer(ApiKeySerializer):
    key = serializers.CharField(read_only=True, help_text="The key itself: shown only once.")


class RotatedApiKeySerializer(CreatedApiKeySerializer):
    previous = ApiKeySerializer(help_text="The key replaced (valid for the grace period).")


class ApiKeyListSerializer(serializers.Serializer):
    results = ApiKeySerializer(many=True)


class RotateRequestSerializer(serializers.Serializer):
    grace_seconds = serializers.IntegerField(min_value=0, required=False)


class SimulateRequestSerializer(serializers.Serializer):
    action = serializers.CharField()
    arguments = serializers.DictField(required=False)
    environment = serializers.ChoiceField(["test", "live"], required=False)
    session_id = serializers.CharField(required=False, allow_null=True)
    metadata = serializers.DictField(required=False, allow_null=True)


class SimulateResponseSerializer(serializers.Serializer):
    decision = serializers.CharField()
    status = serializers.CharField()
    reason = serializers.CharField()
    rule = serializers.CharField(allow_null=True)
    message = serializers.CharField(allow_null=True)
    environment = serializers.CharField()
    matched = serializers.ListField(child=serializers.DictField())
    totals = serializers.DictField(child=serializers.CharField())
    shadow = serializers.ListField(child=serializers.DictField())
    enforcement = serializers.ChoiceField(["enforce", "log_only"])


class BacktestRequestSerializer(serializers.Serializer):
    policy = serializers.JSONField(
        help_text="The candidate policy document: a YAML or JSON string, or a JSON object."
    )
    since = serializers.CharField(help_text="ISO-8601 time (or a duration before now: 7d).")
    until = serializers.CharField(required=False, help_text="ISO-8601 time; default now.")
    limit = serializers.IntegerField(
        required=False, min_value=1, max_value=100_000, help_text="Calls replayed at most."
    )


class BacktestSampleSerializer(serializers.Serializer):
    action_id = serializers.CharField()
    action = serializers.CharField()
    arguments = serializers.JSONField()
    at = serializers.DateTimeField()
    was = serializers.CharField()
    would_be = serializers.CharField()
    rule = serializers.CharField(allow_null=True)
    reason = serializers.CharField()


class BacktestRuleSerializer(serializers.Serializer):
    rule = serializers.CharField()
    scope = serializers.ChoiceField(["agent", "org"])
    matched = serializers.IntegerField()
    changed = serializers.IntegerField()


class BacktestResponseSerializer(serializers.Serializer):
    agent_id = serializers.CharField()
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    limit = serializers.IntegerField()
    truncated = serializers.BooleanField(help_text="The period held more calls than limit.")
    history_truncated = serializers.BooleanField(
        help_text="The window before since held more than 1,000,000 calls to count: the "
        "running totals started from the first million."
    )
    calls = serializers.IntegerField()
    changed = serializers.IntegerField()
    transitions = serializers.DictField(child=serializers.IntegerField())
    by_rule = BacktestRuleSerializer(many=True)
    samples = BacktestSampleSerializer(many=True)


class TokenUsageRequestSerializer(serializers.Serializer):
    model = serializers.CharField()
    prompt_tokens = serializers.IntegerField(min_value=0)
    completion_tokens = serializers.IntegerField(min_value=0)
    session_id = serializers.CharField(required=False)
    agent = serializers.CharField(required=False, help_text="Org keys: the agent, optional.")


class TokenUsageResponseSerializer(serializers.Serializer):
    usage_id = serializers.CharField()
    total_tokens = serializers.IntegerField()
    total_cost_usd = serializers.FloatField()


class TokenUsageRowSerializer(serializers.Serializer):
    model = serializers.CharField(required=False, help_text="group_by=model")
    day = serializers.DateField(required=False, allow_null=True, help_text="group_by=day")
    session = serializers.CharField(required=False, help_text="group_by=session")
    calls = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    total_cost_usd = serializers.FloatField()


class TokenUsageTotalsSerializer(serializers.Serializer):
    calls = serializers.IntegerField(required=False)
    total_tokens = serializers.IntegerField(required=False)
    total_cost_usd = serializers.FloatField(required=False)


class TokenUsageSummarySerializer(serializers.Serializer):
    group_by = serializers.ChoiceField(["model", "day", "session"])
    results = TokenUsageRowSerializer(many=True)
    totals = TokenUsageTotalsSerializer(help_text="Empty when there is no usage.")


class PolicyVersionSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    actor = serializers.CharField(allow_null=True)
    source = serializers.CharField()
    note = serializers.CharField(allow_null=True)
    summary = serializers.CharField()
    restored_from = serializers.IntegerField(allow_null=True)


class PolicyVersionListSerializer(serializers.Serializer):
    results = PolicyVersionSerializer(many=True)
    next = serializers.CharField(allow_null=True)


class PolicyVersionDiffSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    against = serializers.IntegerField(allow_null=True)
    diff = serializers.CharField()


class NoteRequestSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, max_length=1000)


# --- The wire-compatible endpoints (ARDEN_TAG, AGENTWARDEN_TAG) -----------------------------


class ArdenCheckMetadataSerializer(serializers.Serializer):
    session_id = serializers.CharField(required=False, allow_null=True, max_length=200)


class ArdenCheckRequestSerializer(serializers.Serializer):
    tool_name = serializers.CharField(max_length=200, help_text="The action, e.g. stripe.refund")
    args = serializers.ListField(required=False, allow_null=True, child=serializers.JSONField())
    kwargs = serializers.DictField(
        required=False, allow_null=True, help_text="The tool's arguments by parameter name."
    )
    metadata = ArdenCheckMetadataSerializer(required=False, allow_null=True)
    agent = serializers.CharField(
        required=False, help_text="Org keys only: the agent's agt_ id or name."
    )


class ArdenCheckResponseSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(["allow", "requires_approval", "block"])
    action_id = serializers.CharField()
    message = serializers.CharField(allow_null=True)
    reason = serializers.CharField(
        help_text="no_policy_configured when no rule matched and the call was allowed."
    )
    status = serializers.ChoiceField(["allowed", "blocked", "pending"])
    environment = serializers.ChoiceField(["test", "live"])
    user_id = serializers.CharField(help_text="The organisation's id.")
    rule = serializers.CharField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)


class ArdenStatusSerializer(serializers.Serializer):
    action_id = serializers.CharField()
    status = serializers.ChoiceField(
        ["pending", "approved", "denied"],
        help_text="Expired and cancelled requests read as denied (the reason in message).",
    )
    message = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    native_status = serializers.ChoiceField(
        ["allowed", "blocked", "pending", "approved", "denied", "expired", "cancelled"]
    )


class AgentWardenCheckRequestSerializer(serializers.Serializer):
    agent_id = serializers.CharField(max_length=200, help_text="The agent's agt_ id or name.")
    action = serializers.CharField(max_length=200)
    context = serializers.DictField(required=False, allow_null=True)


class AgentWardenCheckResponseSerializer(serializers.Serializer):
    allowed = serializers.BooleanField()
    requires_approval = serializers.BooleanField()
    reason = serializers.CharField(allow_null=True)
    action_id = serializers.CharField()
    decision = serializers.ChoiceField(["allow", "requires_approval", "block"])
    rule = serializers.CharField(allow_null=True)


SDK_LOG_STATUSES = ["success", "blocked", "failed", "pending_approval"]


class AgentWardenLogRequestSerializer(serializers.Serializer):
    agent_id = serializers.CharField(max_length=200)
    action = serializers.CharField(max_length=200)
    status = serializers.ChoiceField(SDK_LOG_STATUSES)
    context = serializers.DictField(required=False, allow_null=True)


class AgentWardenLogResponseSerializer(serializers.Serializer):
    id = serializers.CharField()
    agent_id = serializers.CharField()
    organization_id = serializers.CharField()
    action = serializers.CharField()
    status = serializers.CharField()
    context = serializers.DictField(allow_null=True)
    created_at = serializers.DateTimeField()


# --- Audit ---------------------------------------------------------------------------------


class AuditPublicKeySerializer(serializers.Serializer):
    key_id = serializers.CharField()
    public_key = serializers.CharField()
    algorithm = serializers.ChoiceField(["ed25519"])
    signing = serializers.BooleanField(help_text="The key new checkpoints are signed with.")


class AuditCheckpointSerializer(serializers.Serializer):
    kind = serializers.CharField()
    seq = serializers.IntegerField()
    hash = serializers.CharField()
    created_at = serializers.CharField(help_text="The time as the chain hashes it.")
    key_id = serializers.CharField(allow_null=True)
    signature = serializers.CharField(allow_null=True)


class AuditCheckpointListSerializer(serializers.Serializer):
    public_keys = AuditPublicKeySerializer(many=True)
    results = AuditCheckpointSerializer(many=True)
    next = serializers.CharField(allow_null=True, help_text="The after of the next page.")
