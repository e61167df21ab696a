from __future__ import annotations

from django.db import models
from django.utils import timezone

from wardenproject.ids import public_id


def new_mcp_server_id() -> str:
    return public_id("mcp")


class McpServer(models.Model):
    """An upstream MCP server (streamable HTTP) that an organisation's agents reach through
    the gateway at ``/mcp/{name}``."""

    class Hold(models.TextChoices):
        WAIT = "wait", "Keep the call open until decided"
        RETURN_PENDING = "return_pending", "Return at once; a later identical call runs"

    public_id = models.CharField(
        max_length=32, unique=True, default=new_mcp_server_id, editable=False
    )
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="mcp_servers"
    )
    name = models.SlugField(max_length=64)
    url = models.URLField(max_length=500)
    # JSON object of headers sent upstream, encrypted at rest (webhooks/crypto.py); never
    # shown again. Read through ``mcp_server_upstream_headers``.
    headers = models.TextField(blank=True)
    agents = models.ManyToManyField(
        "agents.Agent", blank=True, related_name="+", help_text="Empty: every agent."
    )
    hold = models.CharField(max_length=16, choices=Hold.choices, default=Hold.WAIT)
    timeout_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="Upstream timeout; empty: WARDEN_MCP_UPSTREAM_TIMEOUT."
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "agents"
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "name"], name="mcp_server_name_unique_in_org"
            )
        ]

    def __str__(self) -> str:
        return self.name
