from __future__ import annotations

from django.urls import path

from agents import views

app_name = "agents"

urlpatterns = [
    path("", views.agent_list, name="list"),
    path("new/", views.agent_create, name="create"),
    path("org-keys/", views.org_keys, name="org_keys"),
    path("audit/", views.audit, name="audit"),
    path("audit/<str:action_id>/", views.action, name="action"),
    path("keys/<str:key_id>/revoke/", views.key_revoke, name="key_revoke"),
    path("keys/<str:key_id>/rotate/", views.key_rotate, name="key_rotate"),
    path("<str:agent_id>/", views.agent_detail, name="detail"),
    path("<str:agent_id>/settings/", views.agent_settings, name="settings"),
    path("<str:agent_id>/rules/new/", views.rule_create, name="rule_create"),
    path("<str:agent_id>/rules/<str:rule_id>/", views.rule_edit, name="rule_edit"),
    path("<str:agent_id>/rules/<str:rule_id>/delete/", views.rule_delete, name="rule_delete"),
    path("<str:agent_id>/rules/<str:rule_id>/toggle/", views.rule_toggle, name="rule_toggle"),
    path("<str:agent_id>/rules/<str:rule_id>/promote/", views.rule_promote, name="rule_promote"),
    path("<str:agent_id>/keys/new/", views.agent_key_create, name="key_create"),
    path("<str:agent_id>/policy/", views.policy_apply, name="policy_apply"),
    path("<str:agent_id>/policy/backtest/", views.policy_backtest, name="policy_backtest"),
    path("<str:agent_id>/policy.yaml", views.policy_download, name="policy_download"),
    path("<str:agent_id>/versions/", views.policy_versions, name="versions"),
    path("<str:agent_id>/versions/<str:number>/", views.policy_version_detail, name="version"),
    path(
        "<str:agent_id>/versions/<str:number>/restore/",
        views.policy_version_restore,
        name="version_restore",
    ),
    path("<str:agent_id>/simulate/", views.simulate, name="simulate"),
]
