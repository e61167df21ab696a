"""The native API (v1): checks, actions, agents, rules, keys, policies, token usage.

Views parse input (agents.http), call one service or selector and render the result.
"""

from __future__ import annotations

import time
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.cache import patch_cache_control
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Organization
from agents import checks, runtime, selectors, services
from agents.backtest import agent_policy_backtest
from agents.http import (
    KeyOnlyPostView,
    action_field,
    body_bytes,
    bool_field,
    idempotency_key_from,
    int_field,
    json_object,
    object_field,
    string_field,
)
from agents.models import Agent, ApiKey, TokenUsage
from agents.openapi import KEY_ONLY_AUTH
from agents.permissions import (
    IsAgentOrOrgKey,
    IsCallerOfActions,
    IsManager,
    IsMember,
    api_principal,
    request_organization,
)
from agents.policy import SHADOW
from agents.policy_document import MAX_DOCUMENT_BYTES, PolicyDocumentError
from agents.schemas import (
    ERRORS,
    ActionSerializer,
    AgentListSerializer,
    AgentSerializer,
    ApiKeyListSerializer,
    ApiKeySerializer,
    BacktestRequestSerializer,
    BacktestResponseSerializer,
    CheckRequestSerializer,
    CheckResponseSerializer,
    CreatedApiKeySerializer,
    NoteRequestSerializer,
    OutcomeRequestSerializer,
    OutcomeResponseSerializer,
    PolicyVersionDiffSerializer,
    PolicyVersionListSerializer,
    PolicyVersionSerializer,
    RotatedApiKeySerializer,
    RotateRequestSerializer,
    RuleDetailSerializer,
    RuleListSerializer,
    RuleSerializer,
    SimulateRequestSerializer,
    SimulateResponseSerializer,
    TokenUsageRequestSerializer,
    TokenUsageResponseSerializer,
    TokenUsageSummarySerializer,
)
from agents.shadow import shadow_stats
from audit.models import AuditEntry
from audit.selectors import action_detail, check_entry_get
from wardenproject.errors import ValidationFailed
from wardenproject.strictjson import json_parse

MAX_WAIT_SECONDS = 60
OUTCOME_STATUSES = ("success", "failed", "blocked")


def _organization(request: Request) -> Organization:
    organization = request_organization(request)
    if organization is None:
        raise Http404("No organisation.")
    return organization


def _user(request: Request) -> Any:
    return None if api_principal(request) is not None else request.user


def _note(data: dict[str, Any]) -> str:
    """The optional ``note`` of a body that changes a policy (taken out of it): it is kept
    with the policy version the change makes."""
    note = data.pop("note", None)
    if note is None:
        return ""
    return string_field({"note": note}, "note", max_length=services.MAX_NOTE_LENGTH)


def _query_note(request: Request) -> str:
    """``?note=`` for the changes whose body is not a JSON object (PUT of a document,
    DELETE)."""
    return _note({"note": request.query_params.get("note")})


def parse_check_body(data: dict[str, Any]) -> dict[str, Any]:
    action = action_field(data, "action")
    arguments = data.get("arguments")
    if arguments is None:
        arguments = {}
    elif not isinstance(arguments, dict):
        raise ValidationFailed("arguments must be a JSON object.", field="arguments")
    return {
        "action": action,
        "arguments": arguments,
        "session_id": string_field(data, "session_id"),
        "metadata": object_field(data, "metadata"),
        "agent_ref": string_field(data, "agent") or None,
    }


class CheckView(KeyOnlyPostView):
    """Decide one tool call (the hot path)."""

    @extend_schema(
        operation_id="check",
        tags=["check"],
        auth=KEY_ONLY_AUTH,
        request=CheckRequestSerializer,
        responses={200: CheckResponseSerializer, **ERRORS},
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                description="Replays the first answer for a retried request.",
            )
        ],
    )
    def post(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        fields = parse_check_body(json_object(request))
        idempotency_key = idempotency_key_from(request)
        result = checks.check_perform(
            principal=api_principal(request),
            idempotency_key=idempotency_key,
            source="native",
            started=started,
            **fields,
        )
        response = JsonResponse(result.native())
        if result.replayed:
            response["Idempotent-Replayed"] = "true"
        return response


def action_entry_for(request: Request, action_id: str) -> AuditEntry:
    """The check entry, if the caller may see it: agent keys only their own agent's."""
    entry = check_entry_get(organization=_organization(request), action_id=action_id)
    principal = api_principal(request)
    if principal is not None and principal.kind == "agent" and entry.agent_id != principal.agent_id:
        raise Http404("No such action.")
    return entry


class ActionView(APIView):
    permission_classes = [IsCallerOfActions]

    @extend_schema(
        operation_id="action_get",
        parameters=[
            OpenApiParameter(
                "wait", float, description="Long-poll up to this many seconds (0..60)."
            )
        ],
        responses={200: ActionSerializer, **ERRORS},
    )
    def get(self, request: Request, action_id: str) -> Response:
        wait = 0.0
        raw_wait = request.query_params.get("wait")
        if raw_wait not in (None, ""):
            try:
                wait = float(raw_wait)
            except ValueError:
                raise ValidationFailed("wait must be a number of seconds.", field="wait") from None
            if not 0 <= wait <= MAX_WAIT_SECONDS:
                raise ValidationFailed(
                    f"wait must be from 0 to {MAX_WAIT_SECONDS} seconds.", field="wait"
                )
        entry = action_entry_for(request, action_id)
        if wait > 0 and entry.decision == "requires_approval":
            from approvals.selectors import approval_wait_for_decision

            approval_wait_for_decision(action_id=entry.public_id, timeout=wait)
        return Response(action_detail(entry=entry))


class ActionOutcomeView(APIView):
    permission_classes = [IsAgentOrOrgKey]

    @extend_schema(
        operation_id="action_outcome",
        auth=KEY_ONLY_AUTH,
        request=OutcomeRequestSerializer,
        responses={201: OutcomeResponseSerializer, **ERRORS},
    )
    def post(self, request: Request, action_id: str) -> Response:
        data = json_object(request)
        status = string_field(data, "status", required=True)
        if status not in OUTCOME_STATUSES:
            raise ValidationFailed(
                f"status must be one of {', '.join(OUTCOME_STATUSES)}.", field="status"
            )
        error = string_field(data, "error", max_length=10_000) or None
        entry = action_entry_for(request, action_id)
        outcome, created = checks.action_outcome_record(
            principal=api_principal(request),
            check=entry,
            status=status,
            error=error,
            result=data.get("result"),
        )
        return Response(
            {
                "action_id": entry.public_id,
                "outcome": {
                    "status": outcome.status,
                    "error": outcome.data.get("error"),
                    "at": outcome.created_at.isoformat(),
                },
            },
            status=HTTPStatus.CREATED if created else HTTPStatus.OK,
        )


# --- Agents ---------------------------------------------------------------------------------


class AgentListView(APIView):
    def get_permissions(self) -> list[Any]:
        return [IsMember()] if self.request.method == "GET" else [IsManager()]

    @extend_schema(operation_id="agents_list", responses={200: AgentListSerializer, **ERRORS})
    def get(self, request: Request) -> Response:
        agents = selectors.agent_list(organization=_organization(request))
        return Response({"results": [selectors.agent_detail(a) for a in agents]})

    @extend_schema(
        operation_id="agents_create",
        request=AgentSerializer,
        responses={201: AgentSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = json_object(request)
        agent = services.agent_create(
            organization=_organization(request),
            actor=_user(request),
            name=string_field(data, "name", required=True, max_length=120),
            description=string_field(data, "description", max_length=10_000),
            default_decision=string_field(data, "default") or Agent.DefaultDecision.ALLOW,
            enforcement=string_field(data, "enforcement") or Agent.Enforcement.ENFORCE,
        )
        return Response(selectors.agent_detail(agent), status=HTTPStatus.CREATED)


class AgentDetailView(APIView):
    def get_permissions(self) -> list[Any]:
        return [IsMember()] if self.request.method == "GET" else [IsManager()]

    @extend_schema(operation_id="agents_get", responses={200: AgentSerializer, **ERRORS})
    def get(self, request: Request, agent_id: str) -> Response:
        agent = selectors.agent_get(organization=_organization(request), ref=agent_id)
        return Response(selectors.agent_detail(agent))

    @extend_schema(
        operation_id="agents_update",
        request=AgentSerializer,
        responses={200: AgentSerializer, **ERRORS},
    )
    def patch(self, request: Request, agent_id: str) -> Response:
        agent = selectors.agent_get(organization=_organization(request), ref=agent_id)
        data = json_object(request)
        note = _note(data)
        changes: dict[str, Any] = {}
        if "name" in data:
            changes["name"] = string_field(data, "name", required=True, max_length=120)
        if "description" in data:
            changes["description"] = string_field(data, "description", max_length=10_000)
        if "default" in data:
            changes["default_decision"] = string_field(data, "default", required=True)
        if "enforcement" in data:
            changes["enforcement"] = string_field(data, "enforcement", required=True)
        if "is_active" in data:
            changes["is_active"] = bool_field(data, "is_active")
        agent = services.agent_update(agent=agent, actor=_user(request), note=note, **changes)
        return Response(selectors.agent_detail(agent))

    @extend_schema(operation_id="agents_deactivate", responses={200: AgentSerializer, **ERRORS})
    def delete(self, request: Request, agent_id: str) -> Response:
        agent = selectors.agent_get(organization=_organization(request), ref=agent_id)
        agent = services.agent_deactivate(agent=agent, actor=_user(request))
        return Response(selectors.agent_detail(agent))


# --- Rules ----------------------------------------------------------------------------------


class _RulesBase(APIView):
    """Agent rules when the URL names an agent, organisation-wide rules otherwise."""

    def get_permissions(self) -> list[Any]:
        return [IsMember()] if self.request.method == "GET" else [IsManager()]

    def _agent(self, request: Request, agent_id: str | None) -> Agent | None:
        if agent_id is None:
            return None
        return selectors.agent_get(organization=_organization(request), ref=agent_id)


class RuleListView(_RulesBase):
    @extend_schema(operation_id="rules_list", responses={200: RuleListSerializer, **ERRORS})
    def get(self, request: Request, agent_id: str | None = None) -> Response:
        agent = self._agent(request, agent_id)
        rules = selectors.rule_list(organization=_organization(request), agent=agent)
        return Response({"results": [selectors.rule_detail(rule) for rule in rules]})

    @extend_schema(
        operation_id="rules_create",
        request=RuleSerializer,
        responses={201: RuleSerializer, **ERRORS},
    )
    def post(self, request: Request, agent_id: str | None = None) -> Response:
        agent = self._agent(request, agent_id)
        data = json_object(request)
        note = _note(data)
        rule = services.rule_create(
            organization=_organization(request),
            agent=agent,
            data=data,
            actor=_user(request),
            note=note,
        )
        return Response(selectors.rule_detail(rule), status=HTTPStatus.CREATED)


class RuleDetailView(_RulesBase):
    def _rule(self, request: Request, agent_id: str | None, rule_id: str) -> Any:
        agent = self._agent(request, agent_id)
        return selectors.rule_get(
            organization=_organization(request), public_id=rule_id, agent=agent
        )

    @extend_schema(operation_id="rules_get", responses={200: RuleDetailSerializer, **ERRORS})
    def get(self, request: Request, rule_id: str, agent_id: str | None = None) -> Response:
        rule = self._rule(request, agent_id, rule_id)
        detail = selectors.rule_detail(rule)
        if rule.document.get("mode") == SHADOW:
            detail["shadow"] = shadow_stats(rule=rule)
        return Response(detail)

    @extend_schema(
        operation_id="rules_update",
        request=RuleSerializer,
        responses={200: RuleSerializer, **ERRORS},
    )
    def patch(self, request: Request, rule_id: str, agent_id: str | None = None) -> Response:
        rule = self._rule(request, agent_id, rule_id)
        data = json_object(request)
        note = _note(data)
        rule = services.rule_update(rule=rule, data=data, actor=_user(request), note=note)
        return Response(selectors.rule_detail(rule))

    @extend_schema(operation_id="rules_delete", responses={204: None, **ERRORS})
    def delete(self, request: Request, rule_id: str, agent_id: str | None = None) -> Response:
        rule = self._rule(request, agent_id, rule_id)
        note = _query_note(request)
        if body_bytes(request).strip():
            note = _note(json_object(request)) or note
        services.rule_delete(rule=rule, actor=_user(request), note=note)
        return Response(status=HTTPStatus.NO_CONTENT)


# The same views serve the organisation-wide rules (/rules): their own operation ids.
@extend_schema_view(
    get=extend_schema(operation_id="org_rules_list"),
    post=extend_schema(operation_id="org_rules_create"),
)
class OrgRuleListView(RuleListView):
    pass


@extend_schema_view(
    get=extend_schema(operation_id="org_rules_get"),
    patch=extend_schema(operation_id="org_rules_update"),
    delete=extend_schema(operation_id="org_rules_delete"),
)
class OrgRuleDetailView(RuleDetailView):
    pass


# --- Keys -----------------------------------------------------------------------------------


class KeyListView(APIView):
    def get_permissions(self) -> list[Any]:
        return [IsMember()] if self.request.method == "GET" else [IsManager()]

    @extend_schema(
        operation_id="keys_list",
        parameters=[OpenApiParameter("agent", str, description="Only this agent's keys.")],
        responses={200: ApiKeyListSerializer, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        organization = _organization(request)
        agent = None
        if request.query_params.get("agent"):
            agent = selectors.agent_get(
                organization=organization, ref=request.query_params["agent"]
            )
        keys = selectors.api_key_list(organization=organization, agent=agent)
        return Response({"results": [selectors.api_key_detail(key) for key in keys]})

    @extend_schema(
        operation_id="keys_create",
        request=ApiKeySerializer,
        responses={201: CreatedApiKeySerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        organization = _organization(request)
        data = json_object(request)
        agent_ref = string_field(data, "agent") or string_field(data, "agent_id")
        agent = selectors.agent_get(organization=organization, ref=agent_ref) if agent_ref else None
        api_key, raw = services.api_key_create(
            organization=organization,
            kind=string_field(data, "kind", required=True),
            actor=_user(request),
            agent=agent,
            environment=string_field(data, "environment") or None,
            name=string_field(data, "name", max_length=120),
        )
        response = Response(
            {**selectors.api_key_detail(api_key), "key": raw}, status=HTTPStatus.CREATED
        )
        patch_cache_control(response, no_store=True)  # carries the key: never cached
        return response


class KeyDetailView(APIView):
    permission_classes = [IsMember]

    @extend_schema(operation_id="keys_get", responses={200: ApiKeySerializer, **ERRORS})
    def get(self, request: Request, key_id: str) -> Response:
        api_key = selectors.api_key_get(organization=_organization(request), public_id=key_id)
        return Response(selectors.api_key_detail(api_key))


class KeyRevokeView(APIView):
    permission_classes = [IsManager]

    @extend_schema(
        operation_id="keys_revoke", request=None, responses={200: ApiKeySerializer, **ERRORS}
    )
    def post(self, request: Request, key_id: str) -> Response:
        api_key = selectors.api_key_get(organization=_organization(request), public_id=key_id)
        api_key = services.api_key_revoke(api_key=api_key, actor=_user(request))
        return Response(selectors.api_key_detail(api_key))


class KeyRotateView(APIView):
    permission_classes = [IsManager]

    @extend_schema(
        operation_id="keys_rotate",
        request=RotateRequestSerializer,
        responses={201: RotatedApiKeySerializer, **ERRORS},
    )
    def post(self, request: Request, key_id: str) -> Response:
        organization = _organization(request)
        api_key = selectors.api_key_get(organization=organization, public_id=key_id)
        data = json_object(request) if body_bytes(request).strip() else {}
        grace = int_field(data, "grace_seconds", maximum=services.MAX_GRACE_SECONDS)
        new, raw = services.api_key_rotate(
            api_key=api_key, actor=_user(request), grace_seconds=grace
        )
        api_key.refresh_from_db()
        response = Response(
            {
                **selectors.api_key_detail(new),
                "key": raw,
                "previous": selectors.api_key_detail(api_key),
            },
            status=HTTPStatus.CREATED,
        )
        patch_cache_control(response, no_store=True)  # carries the key: never cached
        return response


# --- Simulation and policy documents --------------------------------------------------------


class SimulateView(APIView):
    permission_classes = [IsMember]

    @extend_schema(
        operation_id="agents_simulate",
        request=SimulateRequestSerializer,
        responses={200: SimulateResponseSerializer, **ERRORS},
    )
    def post(self, request: Request, agent_id: str) -> Response:
        organization = _organization(request)
        agent = selectors.agent_get(organization=organization, ref=agent_id)
        data = json_object(request)
        fields = parse_check_body(data)
        environment = string_field(data, "environment") or "live"
        if environment not in ApiKey.Environment.values:
            raise ValidationFailed("environment must be test or live.", field="environment")
        agent_rt = runtime.agent_runtime(agent.pk, organization)
        if agent_rt is None:
            raise Http404("No such agent.")
        return Response(
            checks.simulate(
                agent_rt=agent_rt,
                action=fields["action"],
                arguments=fields["arguments"],
                environment=environment,
                session_id=fields["session_id"],
                metadata=fields["metadata"],
            )
        )


# The policy document (docs/POLICY.md): YAML by default, JSON with ?format=json.
POLICY_DOCUMENT_ANSWERS = {
    (200, "application/yaml"): OpenApiTypes.OBJECT,
    (200, "application/json"): OpenApiTypes.OBJECT,
}
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


def _wants_json(request: Request) -> bool:
    fmt = request.query_params.get("format") or ""
    if fmt:
        return fmt == "json"
    accept = request.META.get("HTTP_ACCEPT", "")
    return "application/json" in accept and not any(t in accept for t in YAML_TYPES)


class IgnoreFormatNegotiation:
    """``?format=`` is ours (yaml/json/csv/jsonl), not DRF's renderer override."""

    def select_parser(self, request: Request, parsers: list[Any]) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(self, request: Request, renderers: list[Any], format_suffix=None):
        return renderers[0], renderers[0].media_type


class PolicyView(APIView):
    content_negotiation_class = IgnoreFormatNegotiation

    def get_permissions(self) -> list[Any]:
        return [IsMember()] if self.request.method == "GET" else [IsManager()]

    @extend_schema(
        operation_id="agents_policy_get",
        parameters=[OpenApiParameter("format", str, enum=["yaml", "json"])],
        responses={**POLICY_DOCUMENT_ANSWERS, **ERRORS},
    )
    def get(self, request: Request, agent_id: str) -> HttpResponse:
        agent = selectors.agent_get(organization=_organization(request), ref=agent_id)
        if _wants_json(request):
            text = services.policy_export(agent=agent, format="json")
            return HttpResponse(text, content_type="application/json")
        text = services.policy_export(agent=agent, format="yaml")
        return HttpResponse(text, content_type="application/yaml; charset=utf-8")

    @extend_schema(
        operation_id="agents_policy_put",
        request={"application/yaml": OpenApiTypes.STR, "application/json": OpenApiTypes.OBJECT},
        responses={200: AgentSerializer, **ERRORS},
    )
    def put(self, request: Request, agent_id: str) -> Response:
        organization = _organization(request)
        agent = selectors.agent_get(organization=organization, ref=agent_id)
        note = _query_note(request)
        content_type = request.META.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        fmt = "yaml" if content_type in YAML_TYPES else "json" if "json" in content_type else None
        raw = body_bytes(request, limit=MAX_DOCUMENT_BYTES)
        if fmt == "json" or (fmt is None and raw.lstrip()[:1] in (b"{", b"[")):
            json_parse(raw)  # the strict reader's refusals (NUL, depth…) come first
        try:
            document = services.policy_document_parse(
                organization=organization, text=raw, format=fmt
            )
        except PolicyDocumentError as exc:
            raise services.policy_error_answer(exc) from None
        if document.agent != agent.name:
            raise ValidationFailed(
                f"The document is for agent {document.agent!r}, not {agent.name!r}.",
                field="agent",
            )
        agent = services.policy_import(
            organization=organization,
            document=document,
            actor=_user(request),
            agent=agent,
            note=note,
        )
        return Response(
            {
                **selectors.agent_detail(agent),
                "rules": len(document.rules),
                "policy_version": selectors.policy_version_latest_number(agent=agent),
                "warnings": selectors.policy_routing_warnings(
                    organization=organization, rules=document.rules
                ),
            },
        )


# --- Policy versions ------------------------------------------------------------------------


def _version_of(request: Request, agent_id: str, number: str) -> tuple[Agent, Any]:
    """The agent (of the caller's organisation) and its version ``number``, or 404."""
    agent = selectors.agent_get(organization=_organization(request), ref=agent_id)
    if not number.isascii() or not number.isdigit() or len(number) > 9:
        raise Http404("No such policy version.")
    return agent, selectors.policy_version_get(agent=agent, number=int(number))


def _positive_query_int(request: Request, name: str, maximum: int = 10**9) -> int | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw[:10]) <= maximum:
        raise ValidationFailed(f"{name} must be a whole number from 1 to {maximum}.", field=name)
    return int(raw)


class PolicyVersionListView(APIView):
    permission_classes = [IsMember]

    @extend_schema(
        operation_id="agents_policy_versions_list",
        parameters=[
            OpenApiParameter("before", int, description="Versions numbered below this."),
            OpenApiParameter("limit", int, description="At most this many (1..100, 20)."),
        ],
        responses={200: PolicyVersionListSerializer, **ERRORS},
    )
    def get(self, request: Request, agent_id: str) -> Response:
        agent = selectors.agent_get(organization=_organization(request), ref=agent_id)
        before = _positive_query_int(request, "before")
        limit = (
            _positive_query_int(request, "limit", maximum=selectors.MAX_VERSION_PAGE_SIZE)
            or selectors.VERSION_PAGE_SIZE
        )
        versions, next_before = selectors.policy_version_page(
            agent=agent, before=before, limit=limit
        )
        next_url = None
        if next_before is not None:
            next_url = f"{request.path}?{urlencode({'before': next_before, 'limit': limit})}"
        return Response(
            {
                "results": [selectors.policy_version_entry(v) for v in versions],
                "next": next_url,
            }
        )


class PolicyVersionView(APIView):
    permission_classes = [IsMember]
    content_negotiation_class = IgnoreFormatNegotiation

    @extend_schema(
        operation_id="agents_policy_versions_get",
        parameters=[OpenApiParameter("format", str, enum=["yaml", "json"])],
        responses={**POLICY_DOCUMENT_ANSWERS, **ERRORS},
    )
    def get(self, request: Request, agent_id: str, number: str) -> HttpResponse:
        _agent, version = _version_of(request, agent_id, number)
        if _wants_json(request):
            response = HttpResponse(
                selectors.policy_version_text(version, "json"), content_type="application/json"
            )
        else:
            response = HttpResponse(
                selectors.policy_version_text(version, "yaml"),
                content_type="application/yaml; charset=utf-8",
            )
        response["Warden-Policy-Version"] = str(version.number)
        return response


class PolicyVersionDiffView(APIView):
    permission_classes = [IsMember]
    content_negotiation_class = IgnoreFormatNegotiation

    @extend_schema(
        operation_id="agents_policy_versions_diff",
        parameters=[
            OpenApiParameter("against", int, description="The older side (default: n - 1)."),
            OpenApiParameter("format", str, enum=["json", "diff"]),
        ],
        responses={
            (200, "application/json"): PolicyVersionDiffSerializer,
            (200, "text/x-diff"): OpenApiTypes.STR,
            **ERRORS,
        },
    )
    def get(self, request: Request, agent_id: str, number: str) -> HttpResponse:
        agent, version = _version_of(request, agent_id, number)
        fmt = request.query_params.get("format") or "json"
        if fmt not in ("json", "diff"):
            raise ValidationFailed("format must be json or diff.", field="format")
        against_number = _positive_query_int(request, "against")
        if against_number is None and "against" in request.query_params:
            raise ValidationFailed("against must be a version number.", field="against")
        against = None
        if against_number is not None:
            try:
                against = selectors.policy_version_get(agent=agent, number=against_number)
            except Http404:
                raise ValidationFailed(
                    f"This agent has no policy version {against_number}.", field="against"
                ) from None
        elif version.number > 1:  # versions are numbered without gaps and never deleted
            against = selectors.policy_version_get(agent=agent, number=version.number - 1)
        diff = selectors.policy_version_diff(version=version, against=against)
        if fmt == "diff":
            return HttpResponse(diff, content_type="text/x-diff; charset=utf-8")
        return Response(
            {
                "number": version.number,
                "against": against.number if against is not None else None,
                "diff": diff,
            }
        )


class PolicyVersionRestoreView(APIView):
    permission_classes = [IsManager]

    @extend_schema(
        operation_id="agents_policy_versions_restore",
        request=NoteRequestSerializer,
        responses={201: PolicyVersionSerializer, **ERRORS},
    )
    def post(self, request: Request, agent_id: str, number: str) -> Response:
        agent, version = _version_of(request, agent_id, number)
        note = _note(json_object(request)) if body_bytes(request).strip() else ""
        restored = services.policy_version_restore(
            agent=agent, number=version.number, actor=_user(request), note=note
        )
        return Response(selectors.policy_version_entry(restored), status=HTTPStatus.CREATED)


class PolicyBacktestView(APIView):
    """Replay the agent's recorded calls against a candidate policy; records nothing."""

    permission_classes = [IsMember]

    @extend_schema(
        operation_id="agents_policy_backtest",
        request=BacktestRequestSerializer,
        responses={200: BacktestResponseSerializer, **ERRORS},
    )
    def post(self, request: Request, agent_id: str) -> Response:
        agent = selectors.agent_get(organization=_organization(request), ref=agent_id)
        data = json_object(request, limit=2 * MAX_DOCUMENT_BYTES)
        if data.get("policy") is None:
            raise ValidationFailed("policy is required.", field="policy")
        return Response(
            agent_policy_backtest(
                agent=agent,
                policy=data["policy"],
                since=data.get("since"),
                until=data.get("until"),
                limit=data.get("limit"),
            )
        )


# --- Token usage ----------------------------------------------------------------------------


def parse_token_usage(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": string_field(data, "model", required=True, max_length=120),
        "prompt_tokens": int_field(data, "prompt_tokens", required=True),
        "completion_tokens": int_field(data, "completion_tokens", required=True),
        "session_id": string_field(data, "session_id"),
    }


def token_usage_answer(usage: TokenUsage) -> dict[str, Any]:
    return {
        "usage_id": usage.public_id,
        "total_tokens": usage.total_tokens,
        "total_cost_usd": float(usage.cost_usd),
    }


def token_usage_agent(request: Request, agent_ref: str | None) -> Agent | None:
    principal = api_principal(request)
    if principal.kind == "agent":
        return checks.check_agent_resolve(principal=principal, agent_ref=agent_ref).agent
    if agent_ref:
        return checks.check_agent_resolve(principal=principal, agent_ref=agent_ref).agent
    return None


class TokenUsageView(APIView):
    permission_classes = [IsAgentOrOrgKey]

    @extend_schema(
        operation_id="token_usage_create",
        auth=KEY_ONLY_AUTH,
        request=TokenUsageRequestSerializer,
        responses={201: TokenUsageResponseSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = json_object(request)
        fields = parse_token_usage(data)
        principal = api_principal(request)
        agent = token_usage_agent(request, string_field(data, "agent") or None)
        usage = services.token_usage_record(
            organization=principal.organization,
            agent=agent,
            environment=principal.environment,
            **fields,
        )
        return Response(token_usage_answer(usage), status=HTTPStatus.CREATED)


class TokenUsageSummaryView(APIView):
    permission_classes = [IsCallerOfActions]

    @extend_schema(
        operation_id="token_usage_summary",
        parameters=[
            OpenApiParameter("group_by", str, enum=["model", "day", "session"]),
            OpenApiParameter("agent", str),
        ],
        responses={200: TokenUsageSummarySerializer, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        organization = _organization(request)
        group_by = request.query_params.get("group_by", "model")
        if group_by not in selectors.TOKEN_USAGE_GROUPS:
            raise ValidationFailed("group_by must be model, day or session.", field="group_by")
        principal = api_principal(request)
        agent_id = None
        if principal is not None and principal.kind == "agent":
            agent_id = principal.agent_id
        elif request.query_params.get("agent"):
            agent_id = selectors.agent_get(
                organization=organization, ref=request.query_params["agent"]
            ).pk
        results, totals = selectors.token_usage_summary(
            organization=organization, agent_id=agent_id, group_by=group_by
        )
        return Response({"group_by": group_by, "results": results, "totals": totals})
