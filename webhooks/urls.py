from __future__ import annotations

from django.urls import path

from webhooks import views

app_name = "webhooks"

urlpatterns = [
    path("", views.endpoint_list, name="list"),
    path("new/", views.endpoint_create, name="create"),
    path("events/", views.event_catalogue, name="events"),
    path("deliveries/<str:delivery_id>/resend/", views.delivery_resend, name="resend"),
    path("<str:endpoint_id>/", views.endpoint_detail, name="detail"),
    path(
        "<str:endpoint_id>/<str:action>/",
        views.endpoint_action,
        name="action",
    ),
]
