"""Audit log export over the API: ``GET /api/v1/audit?format=jsonl|csv`` (streamed)."""

from __future__ import annotations

from datetime import datetime

from django.http import StreamingHttpResponse
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.views import APIView

from agents.api import IgnoreFormatNegotiation, _organization
from agents.permissions import IsMember
from audit.export import FORMATS, audit_entries_for_export, export_lines
from audit.models import AuditEntry
from wardenproject.errors import ValidationFailed


def _when(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    value = parse_datetime(raw.replace(" ", "+"))
    if value is None:
        raise ValidationFailed(f"{name} must be an ISO-8601 date and time.", field=name)
    return value


class AuditExportView(APIView):
    permission_classes = [IsMember]
    content_negotiation_class = IgnoreFormatNegotiation

    @extend_schema(
        operation_id="audit_export",
        parameters=[
            OpenApiParameter("format", str, enum=list(FORMATS)),
            OpenApiParameter("since", OpenApiTypes.DATETIME),
            OpenApiParameter("until", OpenApiTypes.DATETIME),
            OpenApiParameter("kind", str, enum=list(AuditEntry.Kind.values)),
            OpenApiParameter("agent", str, description="Agent public id."),
        ],
        responses={(200, "application/x-ndjson"): OpenApiTypes.STR},
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        fmt = request.query_params.get("format", "jsonl")
        if fmt not in FORMATS:
            raise ValidationFailed("format must be jsonl or csv.", field="format")
        kind = request.query_params.get("kind") or None
        if kind is not None and kind not in AuditEntry.Kind.values:
            raise ValidationFailed("Unknown kind.", field="kind")
        entries = audit_entries_for_export(
            organization=_organization(request),
            since=_when(request, "since"),
            until=_when(request, "until"),
            kind=kind,
            agent_public_id=request.query_params.get("agent") or None,
        )
        content_type = "application/x-ndjson" if fmt == "jsonl" else "text/csv; charset=utf-8"
        response = StreamingHttpResponse(export_lines(entries, fmt), content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="warden-audit.{fmt}"'
        return response
