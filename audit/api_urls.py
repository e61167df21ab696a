from __future__ import annotations

from django.urls import path

from audit import api

urlpatterns = [
    path("audit", api.AuditExportView.as_view(), name="api-audit-export"),
    path("audit/checkpoints", api.AuditCheckpointsView.as_view(), name="api-audit-checkpoints"),
    path("audit/stream", api.AuditStreamView.as_view(), name="api-audit-stream"),
]
