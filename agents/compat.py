"""Wire-compatible endpoints of the Arden (``ardenpy``) and AgentWarden (``agentwarden``) SDKs,
exactly as the two SDKs send them (docs/API.md, "Wire contract"). They share the native
check path."""

from __future__ import annotations

import time
from http import HTTPStatus
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents import checks, services
from agents.api import action_entry_for, parse_token_usage, token_usage_answer
from agents.http import (
    KeyOnlyPostView,
    action_field,
    idempotency_key_from,
    json_object,
    object_field,
    string_field,
)
from agents.openapi import KEY_ONLY_AUTH
from agents.permissions import IsAgentOrOrgKey, api_principal
from agents.schemas import (
    AGENTWARDEN_TAG,
    ARDEN_TAG,
    ERRORS,
    SDK_LOG_STATUSES,
    AgentWardenCheckRequestSerializer,
    AgentWardenCheckResponseSerializer,
    AgentWardenLogRequestSerializer,
    AgentWardenLogResponseSerializer,
    ArdenCheckRequestSerializer,
    ArdenCheckResponseSerializer,
    ArdenStatusSerializer,
    TokenUsageRequestSerializer,
    TokenUsageResponseSerializer,
)
from wardenproject.errors import ValidationFailed
from wardenproject.jsonutil import iso


class ArdenCheckView(KeyOnlyPostView):
    """``POST /policy/check`` {tool_name, args, kwargs, metadata: {session_id}}."""

    @extend_schema(
        operation_id="arden_policy_check",
        summary="Check a tool call (Arden SDK)",
        tags=[ARDEN_TAG],
        auth=KEY_ONLY_AUTH,
        request=ArdenCheckRequestSerializer,
        responses={200: ArdenCheckResponseSerializer, **ERRORS},
    )
    def post(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        data = json_object(request)
        tool_name = action_field(data, "tool_name")
        args = data.get("args")
        if args is not None and not isinstance(args, list):
            raise ValidationFailed("args must be a list.", field="args")
        kwargs = data.get("kwargs")
        if kwargs is None:
            kwargs = {}
        elif not isinstance(kwargs, dict):
            raise ValidationFailed("kwargs must be a JSON object.", field="kwargs")
        metadata = object_field(data, "metadata") or {}
        session_id = metadata.get("session_id")
        if session_id is None:
            session_id = ""
        elif not isinstance(session_id, str) or len(session_id) > 200:
            raise ValidationFailed(
                "metadata.session_id must be a string of at most 200 characters.",
                field="metadata.session_id",
            )
        arguments = dict(kwargs)
        if args:
            arguments.setdefault("args", args)
        principal = api_principal(request)
        result = checks.check_perform(
            principal=principal,
            agent_ref=string_field(data, "agent") or None,
            action=tool_name,
            arguments=arguments,
            session_id=session_id,
            metadata=metadata or None,
            source="arden",
            idempotency_key=idempotency_key_from(request),
            started=started,
        )
        return JsonResponse(
            {
                "decision": result.decision,
                "action_id": result.action_id,
                "message": result.message,
                "reason": result.reason,
                "status": result.status,
                "environment": result.environment,
                "user_id": principal.organization.public_id,
                "rule": result.rule,
                "expires_at": iso(result.expires_at),
            }
        )


class ArdenStatusView(APIView):
    """``GET /status/{action_id}``: pending, approved or denied (expired/cancelled read as
    denied, the reason in ``message``)."""

    permission_classes = [IsAgentOrOrgKey]

    @extend_schema(
        operation_id="arden_status",
        summary="A held call's status (Arden SDK)",
        tags=[ARDEN_TAG],
        auth=KEY_ONLY_AUTH,
        responses={200: ArdenStatusSerializer, **ERRORS},
    )
    def get(self, request: Request, action_id: str) -> Response:
        from approvals.selectors import arden_status
        from audit.selectors import action_detail

        detail = action_detail(entry=action_entry_for(request, action_id))
        native = detail["status"]
        status, message = arden_status(native, detail["notes"])
        if message is None:
            if native in ("approved", "denied"):
                message = f"{native} by {detail['decided_by'] or 'a reviewer'}"
            elif native == "pending":
                message = "Waiting for approval."
            else:
                message = detail["reason"]
        return Response(
            {
                "action_id": detail["action_id"],
                "status": status,
                "message": message,
                "created_at": detail["created_at"],
                "native_status": native,
            }
        )


class ArdenTokenUsageView(APIView):
    """``POST /token-usage`` {model, prompt_tokens, completion_tokens, session_id?}."""

    permission_classes = [IsAgentOrOrgKey]

    @extend_schema(
        operation_id="arden_token_usage",
        summary="Record token usage (Arden SDK)",
        tags=[ARDEN_TAG],
        auth=KEY_ONLY_AUTH,
        request=TokenUsageRequestSerializer,
        responses={201: TokenUsageResponseSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        from agents.api import token_usage_agent

        data = json_object(request)
        fields = parse_token_usage(data)
        principal = api_principal(request)
        usage = services.token_usage_record(
            organization=principal.organization,
            agent=token_usage_agent(request, string_field(data, "agent") or None),
            environment=principal.environment,
            **fields,
        )
        return Response(token_usage_answer(usage), status=HTTPStatus.CREATED)


class AgentWardenCheckView(KeyOnlyPostView):
    """``POST /sdk/check`` {agent_id, action, context} -> {allowed, requires_approval, reason}."""

    @extend_schema(
        operation_id="agentwarden_check",
        summary="Check a tool call (AgentWarden SDK)",
        tags=[AGENTWARDEN_TAG],
        auth=KEY_ONLY_AUTH,
        request=AgentWardenCheckRequestSerializer,
        responses={200: AgentWardenCheckResponseSerializer, **ERRORS},
    )
    def post(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        data = json_object(request)
        agent_ref = string_field(data, "agent_id", required=True)
        action = action_field(data, "action")
        context = object_field(data, "context") or {}
        result = checks.check_perform(
            principal=api_principal(request),
            agent_ref=agent_ref,
            action=action,
            arguments=context,
            source="agentwarden",
            started=started,
        )
        return JsonResponse(
            {
                "allowed": result.decision == "allow",
                "requires_approval": result.decision == "requires_approval",
                "reason": result.reason,
                "action_id": result.action_id,
                "decision": result.decision,
                "rule": result.rule,
            }
        )


class AgentWardenLogView(KeyOnlyPostView):
    """``POST /sdk/log`` {agent_id, action, status, context}: one LOG audit entry."""

    @extend_schema(
        operation_id="agentwarden_log",
        summary="Log an action (AgentWarden SDK)",
        tags=[AGENTWARDEN_TAG],
        auth=KEY_ONLY_AUTH,
        request=AgentWardenLogRequestSerializer,
        responses={201: AgentWardenLogResponseSerializer, **ERRORS},
    )
    def post(self, request: HttpRequest) -> HttpResponse:
        data = json_object(request)
        agent_ref = string_field(data, "agent_id", required=True)
        action = action_field(data, "action")
        status = string_field(data, "status", required=True)
        if status not in SDK_LOG_STATUSES:
            raise ValidationFailed(
                f"status must be one of {', '.join(SDK_LOG_STATUSES)}.", field="status"
            )
        context = object_field(data, "context")
        principal = api_principal(request)
        entry = checks.sdk_log_record(
            principal=principal, agent_ref=agent_ref, action=action, status=status, context=context
        )
        body: dict[str, Any] = {
            "id": entry.public_id,
            "agent_id": agent_ref,
            "organization_id": principal.organization.public_id,
            "action": entry.action,
            "status": entry.status,
            "context": context,
            "created_at": entry.created_at.isoformat(),
        }
        return JsonResponse(body, status=HTTPStatus.CREATED)
