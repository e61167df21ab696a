from __future__ import annotations

from django.urls import path

from approvals import slack_views

app_name = "slack"

urlpatterns = [
    path("interactions", slack_views.interactions, name="interactions"),
    path("orgs/<str:org_id>/", slack_views.settings_page, name="settings"),
    path("orgs/<str:org_id>/disconnect", slack_views.disconnect, name="disconnect"),
    path("agents/<str:agent_id>/channel", slack_views.agent_channel, name="agent_channel"),
    path("link/<str:token>/", slack_views.link, name="link"),
    path("links/<int:link_id>/remove", slack_views.link_remove, name="link_remove"),
]
