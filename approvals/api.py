"""The approvals API: the native queue and decisions, claim and cancel, and Arden's
``/approve/{id}`` and ``/deny/{id}``. Each view parses input, calls one service or selector
and renders; errors are DomainErrors mapped once by wardenproject.errors."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Organization, User
from agents.permissions import (
    IsApproverKeyOrReviewer,
    IsMemberOrOrgOrApproverKey,
    request_organization,
)
from agents.schemas import ARDEN_TAG, ERRORS, ActionSerializer
from approvals import turns
from approvals.models import ApprovalRequest
from approvals.schemas import (
    ApprovalListSerializer,
    ArdenDecisionRequestSerializer,
    ArdenDecisionResponseSerializer,
    CancelRequestSerializer,
    ClaimRequestSerializer,
    ClaimResponseSerializer,
    DecisionRequestSerializer,
    GrantListSerializer,
    GrantSerializer,
)
from approvals.selectors import (
    ApprovalFilters,
    approval_compat_status,
    approval_list,
    grant_get_for_org,
    grant_json,
    grant_list,
)
from approvals.services import (
    approval_cancel,
    approval_claim,
    approval_decide,
    approval_request_get,
    grant_revoke,
)
from audit.selectors import action_detail
from wardenproject.errors import Conflict, Forbidden, ValidationFailed

MAX_PAGE = 200


class IsMemberOrKey(BasePermission):
    """A logged-in user or any API key; what each may do is decided by the services."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if getattr(request.auth, "kind", None):
            return True
        user = request.user
        return bool(user is not None and user.is_authenticated)


def request_actor(request: Request) -> tuple[User | None, Any | None]:
    """(user, api_key) of the caller. The key authenticator's principal has ``.kind`` and
    ``.api_key``; a session gives a user."""
    principal = request.auth
    if getattr(principal, "kind", None):
        return None, getattr(principal, "api_key", principal)
    user = request.user
    if user is not None and user.is_authenticated:
        return user, None
    raise NotAuthenticated()


def approval_json(request: ApprovalRequest) -> dict[str, Any]:
    """The native action JSON of an approval request (audit.selectors.action_detail)."""
    if request.check_entry_id is not None:
        return action_detail(entry=request.check_entry, approval=request)
    raise Conflict("The check of this request was purged by retention.", extra={"status": "gone"})


def request_body(request: Request) -> dict[str, Any]:
    """The JSON body (read by the strict parser); none at all reads as ``{}``, anything but an
    object is a 400."""
    data = request.data
    if not isinstance(data, dict):
        raise ValidationFailed("The request body must be a JSON object.")
    return data


class TextField(serializers.CharField):
    """A JSON string: DRF's CharField would also take a number or a boolean as text."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class NotesSerializer(serializers.Serializer):
    notes = TextField(required=False, allow_blank=True, allow_null=True, default="")


class DecisionSerializer(NotesSerializer):
    # Validated by the decision service (approvals/grants.py), which names the field.
    grant = serializers.JSONField(required=False, allow_null=True, default=None)


class ListQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=ApprovalRequest.Status.choices, required=False, allow_blank=True
    )
    agent = serializers.CharField(required=False, allow_blank=True, max_length=120)
    environment = serializers.ChoiceField(
        choices=["test", "live"], required=False, allow_blank=True
    )
    limit = serializers.IntegerField(required=False, min_value=1, max_value=MAX_PAGE, default=50)


class ApprovalListApi(APIView):
    """`GET /api/v1/approvals?status=pending&agent=&environment=&limit=`."""

    permission_classes = [IsMemberOrKey]

    @extend_schema(
        operation_id="approvals_list",
        tags=["approvals"],
        parameters=[ListQuerySerializer],
        responses={200: ApprovalListSerializer, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        query = ListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        _user, key = request_actor(request)
        organization: Organization | None
        if key is not None:
            if key.kind == "agent":
                raise Forbidden("Agent keys cannot list the approval queue.")
            organization = key.organization
        else:
            organization = getattr(request._request, "organization", None)
        if not organization:
            return Response({"results": [], "count": 0})
        data = query.validated_data
        qs = approval_list(
            organization=organization,
            filters=ApprovalFilters(
                status=data.get("status") or "",
                agent=data.get("agent") or "",
                environment=data.get("environment") or "",
            ),
        ).select_related("check_entry")
        count = qs.count()
        results = [
            approval_json(item) for item in qs[: data["limit"]] if item.check_entry_id is not None
        ]
        return Response({"results": results, "count": count})


class _DecideApi(APIView):
    permission_classes = [IsMemberOrKey]
    approve: bool = True

    def post(self, request: Request, action_id: str) -> Response:
        body = DecisionSerializer(data=request_body(request))
        body.is_valid(raise_exception=True)
        user, key = request_actor(request)
        grant = body.validated_data.get("grant")
        # The caller's organisation's turn for the whole request (approvals/turns.py): a
        # request of another organisation is a 404 from approval_decide, as always.
        with turns.decision_turn(organization=request_organization(request)):
            decided = approval_decide(
                request_or_action_id=action_id,
                actor_user=user,
                actor_key=key,
                approve=self.approve,
                notes=body.validated_data.get("notes") or "",
                source="api",
                grant=grant,
            )
            answer = approval_json(decided)
            if grant is not None:
                # The grants made so far from this request (with a quorum: once approved).
                answer["grants"] = [
                    grant_json(made)
                    for made in grant_list(organization=decided.organization, request=decided)
                ]
        return Response(answer)


def _decide_schema(operation_id: str, summary: str) -> Any:
    return extend_schema(
        operation_id=operation_id,
        summary=summary,
        tags=["approvals"],
        request=DecisionRequestSerializer,
        responses={200: ActionSerializer, **ERRORS},
    )


class ApproveApi(_DecideApi):
    """`POST /api/v1/actions/{id}/approve` `{notes, grant}`."""

    approve = True

    @_decide_schema("action_approve", "Approve a pending request")
    def post(self, request: Request, action_id: str) -> Response:
        return super().post(request, action_id)


class DenyApi(_DecideApi):
    """`POST /api/v1/actions/{id}/deny` `{notes}`."""

    approve = False

    @_decide_schema("action_deny", "Deny a pending request")
    def post(self, request: Request, action_id: str) -> Response:
        return super().post(request, action_id)


class ClaimSerializer(serializers.Serializer):
    arguments = serializers.JSONField(required=False)


class ClaimApi(APIView):
    """`POST /api/v1/actions/{id}/claim`: the first claim of an approved action wins."""

    permission_classes = [IsMemberOrKey]

    @extend_schema(
        operation_id="action_claim",
        tags=["approvals"],
        request=ClaimRequestSerializer,
        responses={200: ClaimResponseSerializer, **ERRORS},
    )
    def post(self, request: Request, action_id: str) -> Response:
        body = ClaimSerializer(data=request_body(request))
        body.is_valid(raise_exception=True)
        user, key = request_actor(request)
        if key is None:
            _forbid_members(user, action_id)
        claimed = approval_claim(
            request_or_action_id=action_id,
            actor_key=key,
            arguments=body.validated_data.get("arguments"),
        )
        return Response(
            {
                "action_id": claimed.action_id,
                "status": claimed.status,
                "claimed_at": claimed.claimed_at.isoformat(),
            }
        )


def _forbid_members(user: User | None, action_id: str) -> None:
    """Members of the request's organisation get 403 (claiming is the agent's); others 404."""
    from approvals.services import member_can_decide

    request = approval_request_get(action_id)
    member_can_decide(user=user, organization_id=request.organization_id)  # 404 if outsider
    raise Forbidden("Only the agent's key or an organisation key can claim an action.")


class CancelSerializer(serializers.Serializer):
    reason = TextField(required=False, allow_blank=True, allow_null=True, default="")


class CancelApi(APIView):
    """`POST /api/v1/actions/{id}/cancel` `{reason}`: withdraw a pending request."""

    permission_classes = [IsMemberOrKey]

    @extend_schema(
        operation_id="action_cancel",
        tags=["approvals"],
        request=CancelRequestSerializer,
        responses={200: ActionSerializer, **ERRORS},
    )
    def post(self, request: Request, action_id: str) -> Response:
        body = CancelSerializer(data=request_body(request))
        body.is_valid(raise_exception=True)
        user, key = request_actor(request)
        cancelled = approval_cancel(
            request_or_action_id=action_id,
            actor_user=user,
            actor_key=key,
            reason=body.validated_data.get("reason") or "",
            source="api",
        )
        return Response(approval_json(cancelled))


# --- remembered approvals (grants) ----------------------------------------------------------


class GrantListQuerySerializer(serializers.Serializer):
    agent = serializers.CharField(required=False, allow_blank=True, max_length=120)
    active = serializers.BooleanField(required=False, allow_null=True, default=None)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=MAX_PAGE, default=50)


class GrantListApi(APIView):
    """`GET /api/v1/grants?agent=&active=true|false&limit=`."""

    permission_classes = [IsMemberOrOrgOrApproverKey]

    @extend_schema(
        operation_id="grants_list",
        tags=["grants"],
        parameters=[GrantListQuerySerializer],
        responses={200: GrantListSerializer, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        query = GrantListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        organization = request_organization(request)
        if organization is None:
            return Response({"results": [], "count": 0})
        data = query.validated_data
        qs = grant_list(
            organization=organization, agent=data.get("agent") or "", active=data.get("active")
        )
        return Response(
            {"results": [grant_json(g) for g in qs[: data["limit"]]], "count": qs.count()}
        )


class GrantDetailApi(APIView):
    """`GET /api/v1/grants/{id}`; `DELETE /api/v1/grants/{id}` revokes it."""

    def get_permissions(self) -> list[Any]:
        if self.request.method == "DELETE":
            return [IsApproverKeyOrReviewer()]
        return [IsMemberOrOrgOrApproverKey()]

    @extend_schema(
        operation_id="grant_get", tags=["grants"], responses={200: GrantSerializer, **ERRORS}
    )
    def get(self, request: Request, grant_id: str) -> Response:
        grant = grant_get_for_org(organization=request_organization(request), public_id=grant_id)
        return Response(grant_json(grant))

    @extend_schema(
        operation_id="grant_delete", tags=["grants"], responses={200: GrantSerializer, **ERRORS}
    )
    def delete(self, request: Request, grant_id: str) -> Response:
        return _revoke(request, grant_id)


class GrantRevokeApi(APIView):
    """`POST /api/v1/grants/{id}/revoke`: no check uses the grant from now on."""

    permission_classes = [IsApproverKeyOrReviewer]

    @extend_schema(
        operation_id="grant_revoke",
        tags=["grants"],
        request=None,
        responses={200: GrantSerializer, **ERRORS},
    )
    def post(self, request: Request, grant_id: str) -> Response:
        return _revoke(request, grant_id)


def _revoke(request: Request, grant_id: str) -> Response:
    grant = grant_get_for_org(organization=request_organization(request), public_id=grant_id)
    user, key = request_actor(request)
    return Response(
        grant_json(grant_revoke(grant=grant, actor_user=user, actor_key=key, source="api"))
    )


# --- Arden compatibility (COMPAT.md): POST /approve/{id}, /deny/{id} {"message": ...} ---------


class ArdenMessageSerializer(serializers.Serializer):
    message = TextField(required=False, allow_blank=True, allow_null=True)


class _ArdenDecideApi(APIView):
    permission_classes = [IsMemberOrKey]
    approve: bool = True

    def post(self, request: Request, action_id: str) -> Response:
        body = ArdenMessageSerializer(data=request_body(request))
        body.is_valid(raise_exception=True)
        user, key = request_actor(request)
        wanted = ApprovalRequest.Status.APPROVED if self.approve else ApprovalRequest.Status.DENIED
        try:
            # The organisation's turn for the whole request, as for the native endpoints.
            with turns.decision_turn(organization=request_organization(request)):
                decided = approval_decide(
                    request_or_action_id=action_id,
                    actor_user=user,
                    actor_key=key,
                    approve=self.approve,
                    notes=body.validated_data.get("message") or "",
                    source="arden",
                )
                status, message = approval_compat_status(decided)
        except Conflict as conflict:
            # The SDK retries non-2xx answers: a retry of a decision that went through
            # (same outcome standing) is answered 2xx rather than an error.
            if conflict.extra.get("status") != wanted or conflict.code != "conflict":
                raise
            decided = approval_request_get(action_id)
            status, message = approval_compat_status(decided)
        return Response(
            {
                "action_id": decided.action_id,
                "status": status,
                "message": message,
                "decided_by": decided.decided_by_label or None,
            }
        )


def _arden_decide_schema(operation_id: str, summary: str) -> Any:
    return extend_schema(
        operation_id=operation_id,
        summary=summary,
        tags=[ARDEN_TAG],
        request=ArdenDecisionRequestSerializer,
        responses={200: ArdenDecisionResponseSerializer, **ERRORS},
    )


class ArdenApproveApi(_ArdenDecideApi):
    approve = True

    @_arden_decide_schema("arden_approve", "Approve (Arden SDK)")
    def post(self, request: Request, action_id: str) -> Response:
        return super().post(request, action_id)


class ArdenDenyApi(_ArdenDecideApi):
    approve = False

    @_arden_decide_schema("arden_deny", "Deny (Arden SDK)")
    def post(self, request: Request, action_id: str) -> Response:
        return super().post(request, action_id)
