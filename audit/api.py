"""The audit log over the API: the export (``GET /api/v1/audit?format=jsonl|csv``, streamed),
the signed checkpoints of its chain and the cursor-paginated stream for log collectors."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.api import IgnoreFormatNegotiation, _organization
from agents.permissions import IsMember, IsMemberOrOrgKey
from agents.schemas import ERRORS, AuditCheckpointListSerializer
from audit.export import FORMATS, audit_entries_for_export, entry_row, export_lines
from audit.models import AuditEntry
from audit.selectors import (
    audit_checkpoint_page,
    audit_public_keys,
    audit_stream_page,
    checkpoint_json,
)
from wardenproject.errors import ValidationFailed
from wardenproject.timeparse import datetime_parse_utc

STREAM_LIMIT_DEFAULT = 1000
STREAM_LIMIT_MAX = 5000
CHECKPOINTS_LIMIT_DEFAULT = 100
CHECKPOINTS_LIMIT_MAX = 1000
NEXT_CURSOR_HEADER = "X-Warden-Next-Cursor"


def _limit(request: Request, default: int, maximum: int) -> int:
    raw = request.query_params.get("limit")
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise ValidationFailed(f"limit must be a whole number from 1 to {maximum}.", field="limit")
    return int(raw)


def _seq_cursor(request: Request) -> int:
    raw = request.query_params.get("after")
    if raw is None or raw == "":
        return 0
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise ValidationFailed(
            "after must be a cursor from an earlier answer (X-Warden-Next-Cursor).",
            field="after",
        )
    return int(raw)


def _when(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    value = datetime_parse_utc(raw.replace(" ", "+"))
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
        responses={
            (200, "application/x-ndjson"): OpenApiTypes.STR,
            (200, "text/csv"): OpenApiTypes.STR,
            **ERRORS,
        },
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


class AuditCheckpointsView(APIView):
    """The organisation's signed checkpoints, in chain order, with the public keys."""

    permission_classes = [IsMemberOrOrgKey]

    @extend_schema(
        operation_id="audit_checkpoints",
        parameters=[
            OpenApiParameter("after", str, description="The `next` of the previous page."),
            OpenApiParameter("limit", int, description="1 to 1000 (default 100)."),
        ],
        responses={200: AuditCheckpointListSerializer, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        raw = request.query_params.get("after") or ""
        after = None
        if raw:
            seq, _, ident = raw.partition(".")
            if not (seq.isascii() and seq.isdigit() and ident.isascii() and ident.isdigit()):
                raise ValidationFailed(
                    "after must be the next cursor of an earlier page.", field="after"
                )
            if len(seq) > 18 or len(ident) > 18:
                raise ValidationFailed("after is out of range.", field="after")
            after = (int(seq), int(ident))
        checkpoints, next_cursor = audit_checkpoint_page(
            organization=_organization(request),
            after=after,
            limit=_limit(request, CHECKPOINTS_LIMIT_DEFAULT, CHECKPOINTS_LIMIT_MAX),
        )
        return Response(
            {
                "public_keys": audit_public_keys(),
                "results": [checkpoint_json(c) for c in checkpoints],
                "next": f"{next_cursor[0]}.{next_cursor[1]}" if next_cursor else None,
            }
        )


class AuditStreamView(APIView):
    """JSON Lines of the sealed entries after the cursor, in chain order."""

    permission_classes = [IsMemberOrOrgKey]
    content_negotiation_class = IgnoreFormatNegotiation

    @extend_schema(
        operation_id="audit_stream",
        parameters=[
            OpenApiParameter(
                "after", str, description="Cursor: X-Warden-Next-Cursor of the last answer."
            ),
            OpenApiParameter("limit", int, description="1 to 5000 lines (default 1000)."),
        ],
        responses={(200, "application/x-ndjson"): OpenApiTypes.STR, **ERRORS},
    )
    def get(self, request: Request) -> HttpResponse:
        after = _seq_cursor(request)
        limit = _limit(request, STREAM_LIMIT_DEFAULT, STREAM_LIMIT_MAX)
        links = audit_stream_page(organization=_organization(request), after=after, limit=limit)
        lines = []
        for link in links:
            row: dict[str, Any] = entry_row(link.entry)
            row.update(
                {"cursor": str(link.seq), "seq": link.seq, "prev": link.prev, "hash": link.hash}
            )
            lines.append(json.dumps(row, default=str, ensure_ascii=False) + "\n")
        response = HttpResponse("".join(lines), content_type="application/x-ndjson")
        response[NEXT_CURSOR_HEADER] = str(links[-1].seq) if links else str(after)
        response["X-Warden-More"] = "true" if len(links) == limit else "false"
        return response
