from __future__ import annotations

from django.urls import path

from agents import api

urlpatterns = [
    path("check", api.CheckView.as_view(), name="api-check"),
    path("actions/<str:action_id>", api.ActionView.as_view(), name="api-action"),
    path(
        "actions/<str:action_id>/outcome",
        api.ActionOutcomeView.as_view(),
        name="api-action-outcome",
    ),
    path("agents", api.AgentListView.as_view(), name="api-agents"),
    path("agents/<str:agent_id>", api.AgentDetailView.as_view(), name="api-agent"),
    path("agents/<str:agent_id>/rules", api.RuleListView.as_view(), name="api-agent-rules"),
    path(
        "agents/<str:agent_id>/rules/<str:rule_id>",
        api.RuleDetailView.as_view(),
        name="api-agent-rule",
    ),
    path("agents/<str:agent_id>/simulate", api.SimulateView.as_view(), name="api-simulate"),
    path("agents/<str:agent_id>/policy", api.PolicyView.as_view(), name="api-policy"),
    path(
        "agents/<str:agent_id>/policy/versions",
        api.PolicyVersionListView.as_view(),
        name="api-policy-versions",
    ),
    path(
        "agents/<str:agent_id>/policy/versions/<str:number>",
        api.PolicyVersionView.as_view(),
        name="api-policy-version",
    ),
    path(
        "agents/<str:agent_id>/policy/versions/<str:number>/diff",
        api.PolicyVersionDiffView.as_view(),
        name="api-policy-version-diff",
    ),
    path(
        "agents/<str:agent_id>/policy/versions/<str:number>/restore",
        api.PolicyVersionRestoreView.as_view(),
        name="api-policy-version-restore",
    ),
    path(
        "agents/<str:agent_id>/policy/backtest",
        api.PolicyBacktestView.as_view(),
        name="api-policy-backtest",
    ),
    path("rules", api.OrgRuleListView.as_view(), name="api-rules"),
    path("rules/<str:rule_id>", api.OrgRuleDetailView.as_view(), name="api-rule"),
    path("keys", api.KeyListView.as_view(), name="api-keys"),
    path("keys/<str:key_id>", api.KeyDetailView.as_view(), name="api-key"),
    path("keys/<str:key_id>/revoke", api.KeyRevokeView.as_view(), name="api-key-revoke"),
    path("keys/<str:key_id>/rotate", api.KeyRotateView.as_view(), name="api-key-rotate"),
    path("token-usage", api.TokenUsageView.as_view(), name="api-token-usage"),
    path(
        "token-usage/summary",
        api.TokenUsageSummaryView.as_view(),
        name="api-token-usage-summary",
    ),
]
