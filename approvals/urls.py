from __future__ import annotations

from django.urls import path

from approvals import views

app_name = "approvals"

urlpatterns = [
    path("", views.queue, name="queue"),
    path("queue.fragment", views.queue_fragment, name="queue-fragment"),
    path("pending-count", views.pending_count, name="pending-count"),
    path("decide", views.queue_decide, name="queue-decide"),
    path("history/", views.history, name="history"),
    path("grants/<str:grant_id>/revoke", views.revoke_grant, name="grant-revoke"),
    path("email/<str:choice>/<str:token>/", views.email_link, name="email-link"),
    path("<str:action_id>/", views.detail, name="detail"),
    path("<str:action_id>/status.fragment", views.detail_status, name="detail-status"),
    path("<str:action_id>/decide", views.decide, name="decide"),
]
