from __future__ import annotations

from django.urls import path

from agents.mcp import views

app_name = "mcp"

urlpatterns = [
    path("", views.server_list, name="list"),
    path("<str:server_id>/delete/", views.server_delete, name="delete"),
]
