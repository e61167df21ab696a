from __future__ import annotations

from django.urls import path

from accounts import api

urlpatterns = [
    path("groups", api.GroupListView.as_view(), name="api-groups"),
    path("groups/<str:group_id>", api.GroupDetailView.as_view(), name="api-group"),
    path("groups/<str:group_id>/members", api.GroupMembersView.as_view(), name="api-group-members"),
    path(
        "groups/<str:group_id>/members/<str:user_id>",
        api.GroupMemberView.as_view(),
        name="api-group-member",
    ),
]
