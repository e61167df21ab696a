from __future__ import annotations

from django.urls import path

from audit.insights import views

app_name = "insights"

urlpatterns = [
    path("overview/panel/", views.overview_panel, name="overview-panel"),
    path("tokens/", views.token_usage, name="tokens"),
]
