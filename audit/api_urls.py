from __future__ import annotations

from django.urls import path

from audit import api

urlpatterns = [path("audit", api.AuditExportView.as_view(), name="api-audit-export")]
