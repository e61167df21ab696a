"""JSON API for groups under /api/v1/groups (approver routing: ``group:NAME``).

Members read, owners and admins manage; API keys get 403 (as for webhooks). Another
organisation's group is a 404. Parse, call one service or selector, render.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors, services
from accounts.models import MemberGroup, Membership
from accounts.permissions import Capability, membership_require
from accounts.schemas import (
    GroupCreateSerializer,
    GroupListSerializer,
    GroupMemberAddSerializer,
    GroupSerializer,
)
from agents.permissions import IsMember, IsMemberManager
from agents.schemas import ERRORS
from wardenproject.errors import NotFound, ValidationFailed
from wardenproject.jsonutil import iso


def group_json(group: MemberGroup) -> dict[str, Any]:
    return {
        "id": group.public_id,
        "name": group.name,
        "reference": f"group:{group.name}",
        "members": [
            {"id": user.public_id, "email": user.email} for user in group.members.order_by("email")
        ],
        "created_at": iso(group.created_at),
    }


def _membership(request: Request, *, manage: bool) -> Membership:
    return membership_require(
        user=request.user,
        organization=getattr(request, "organization", None),
        capability=Capability.MANAGE_MEMBERS if manage else Capability.READ,
    )


def _text(request: Request, name: str) -> str:
    data = request.data
    if not isinstance(data, dict):
        raise ValidationFailed("The body must be a JSON object.")
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed(f"{name} is required, as a string.", field=name)
    return value


class GroupApiView(APIView):
    def get_permissions(self) -> list[Any]:
        return [IsMember()] if self.request.method == "GET" else [IsMemberManager()]

    def group(self, request: Request, group_id: str, *, manage: bool) -> MemberGroup:
        membership = _membership(request, manage=manage)
        try:
            return selectors.group_get_in_organization(
                organization=membership.organization, public_id=group_id
            )
        except Http404:
            raise NotFound("No such group.") from None


class GroupListView(GroupApiView):
    @extend_schema(
        operation_id="groups_list",
        tags=["groups"],
        responses={200: GroupListSerializer, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        membership = _membership(request, manage=False)
        groups = selectors.group_list(organization=membership.organization)
        return Response({"results": [group_json(g) for g in groups]})

    @extend_schema(
        operation_id="group_create",
        tags=["groups"],
        request=GroupCreateSerializer,
        responses={201: GroupSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        membership = _membership(request, manage=True)
        group = services.group_create(
            actor=request.user,
            organization=membership.organization,
            name=_text(request, "name"),
            source="api",
        )
        return Response(group_json(group), status=HTTPStatus.CREATED)


class GroupDetailView(GroupApiView):
    @extend_schema(
        operation_id="group_get",
        tags=["groups"],
        responses={200: GroupSerializer, **ERRORS},
    )
    def get(self, request: Request, group_id: str) -> Response:
        return Response(group_json(self.group(request, group_id, manage=False)))

    @extend_schema(
        operation_id="group_delete",
        tags=["groups"],
        responses={204: None, **ERRORS},
    )
    def delete(self, request: Request, group_id: str) -> Response:
        group = self.group(request, group_id, manage=True)
        services.group_delete(actor=request.user, group=group, source="api")
        return Response(status=HTTPStatus.NO_CONTENT)


class GroupMembersView(GroupApiView):
    @extend_schema(
        operation_id="group_member_add",
        tags=["groups"],
        request=GroupMemberAddSerializer,
        responses={200: GroupSerializer, **ERRORS},
    )
    def post(self, request: Request, group_id: str) -> Response:
        """``{"email": ...}``: put that member of the organisation in the group."""
        group = self.group(request, group_id, manage=True)
        membership = selectors.membership_get_by_email(
            organization=group.organization, email=_text(request, "email")
        )
        if membership is None:
            raise NotFound("No member of this organisation has that email address.", field="email")
        group = services.group_member_add(
            actor=request.user, group=group, user=membership.user, source="api"
        )
        return Response(group_json(group))


class GroupMemberView(GroupApiView):
    @extend_schema(
        operation_id="group_member_remove",
        tags=["groups"],
        responses={200: GroupSerializer, **ERRORS},
    )
    def delete(self, request: Request, group_id: str, user_id: str) -> Response:
        group = self.group(request, group_id, manage=True)
        user = group.members.filter(public_id=user_id).first()
        if user is None:
            raise NotFound("No such member in this group.")
        group = services.group_member_remove(
            actor=request.user, group=group, user=user, source="api"
        )
        return Response(group_json(group))
