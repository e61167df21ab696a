"""Arden and AgentWarden wire-compatible endpoints, mounted at the server root."""

from __future__ import annotations

from django.urls import path

from agents import compat

urlpatterns = [
    path("policy/check", compat.ArdenCheckView.as_view(), name="arden-check"),
    path("status/<str:action_id>", compat.ArdenStatusView.as_view(), name="arden-status"),
    path("token-usage", compat.ArdenTokenUsageView.as_view(), name="arden-token-usage"),
    path("sdk/check", compat.AgentWardenCheckView.as_view(), name="agentwarden-check"),
    path("sdk/log", compat.AgentWardenLogView.as_view(), name="agentwarden-log"),
]
