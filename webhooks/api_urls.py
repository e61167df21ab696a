from __future__ import annotations

from django.urls import path

from webhooks import api

urlpatterns = [
    path("webhooks/endpoints", api.EndpointListView.as_view(), name="api-webhook-endpoints"),
    path(
        "webhooks/endpoints/<str:endpoint_id>",
        api.EndpointDetailView.as_view(),
        name="api-webhook-endpoint",
    ),
    path(
        "webhooks/endpoints/<str:endpoint_id>/rotate",
        api.EndpointRotateView.as_view(),
        name="api-webhook-rotate",
    ),
    path(
        "webhooks/endpoints/<str:endpoint_id>/test",
        api.EndpointTestView.as_view(),
        name="api-webhook-test",
    ),
    path(
        "webhooks/endpoints/<str:endpoint_id>/recover",
        api.EndpointRecoverView.as_view(),
        name="api-webhook-recover",
    ),
    path(
        "webhooks/endpoints/<str:endpoint_id>/deliveries",
        api.EndpointDeliveriesView.as_view(),
        name="api-webhook-deliveries",
    ),
    path(
        "webhooks/deliveries/<str:delivery_id>",
        api.DeliveryDetailView.as_view(),
        name="api-webhook-delivery",
    ),
    path(
        "webhooks/deliveries/<str:delivery_id>/resend",
        api.DeliveryResendView.as_view(),
        name="api-webhook-resend",
    ),
]
