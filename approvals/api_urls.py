from __future__ import annotations

from django.urls import path

from approvals import api

urlpatterns = [
    path("approvals", api.ApprovalListApi.as_view(), name="api-approvals"),
    path("actions/<str:action_id>/approve", api.ApproveApi.as_view(), name="api-action-approve"),
    path("actions/<str:action_id>/deny", api.DenyApi.as_view(), name="api-action-deny"),
    path("actions/<str:action_id>/claim", api.ClaimApi.as_view(), name="api-action-claim"),
    path("actions/<str:action_id>/cancel", api.CancelApi.as_view(), name="api-action-cancel"),
    path("grants", api.GrantListApi.as_view(), name="api-grants"),
    path("grants/<str:grant_id>", api.GrantDetailApi.as_view(), name="api-grant"),
    path("grants/<str:grant_id>/revoke", api.GrantRevokeApi.as_view(), name="api-grant-revoke"),
]
