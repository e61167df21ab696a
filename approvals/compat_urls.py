from __future__ import annotations

from django.urls import path

from approvals import api

# Arden SDK (ardenpy 0.5.7) approval endpoints, at the server root (COMPAT.md).
urlpatterns = [
    path("approve/<str:action_id>", api.ArdenApproveApi.as_view(), name="arden-approve"),
    path("deny/<str:action_id>", api.ArdenDenyApi.as_view(), name="arden-deny"),
]
