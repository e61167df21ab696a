from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from wardenproject import health

# JSON on the API's, the SDK endpoints' and the health probes' paths, HTML on pages.
handler400 = "wardenproject.errors.bad_request"
handler403 = "wardenproject.errors.permission_denied"
handler404 = "wardenproject.errors.page_not_found"
handler500 = "wardenproject.errors.server_error"

api_v1 = [
    path("", include("agents.api_urls")),
    path("", include("approvals.api_urls")),
    path("", include("webhooks.api_urls")),
    path("", include("audit.api_urls")),
    path("", include("agents.mcp.api_urls")),
    path("", include("accounts.api_urls")),
]

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start-up script as a file: the CSP allows no inline one.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    # Wire-compatible endpoints of the Arden and AgentWarden SDKs, at the root (COMPAT.md).
    path("", include("agents.compat_urls")),
    path("", include("approvals.compat_urls")),
    # Server-rendered pages
    path("approvals/", include("approvals.urls")),
    path("webhooks/", include("webhooks.urls")),
    path("integrations/slack/", include("approvals.slack_urls")),
    # Not /mcp/: that path is the MCP gateway's (its own process, behind the same origin).
    path("mcp-servers/", include("agents.mcp.urls")),
    path("agents/", include("agents.urls")),
    path("insights/", include("audit.insights.urls")),
    path("", include("accounts.urls")),
]
