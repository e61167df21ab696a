"""The navigation's pending count (one indexed COUNT per page), kept live by
static/approvals/pending.js."""

from __future__ import annotations

from typing import Any

from django import template

from approvals.selectors import approval_pending_count

register = template.Library()


@register.inclusion_tag("approvals/_nav_count.html", takes_context=True)
def pending_badge(context: template.Context) -> dict[str, Any]:
    organization = context.get("current_organization")
    count = approval_pending_count(organization=organization) if organization else 0
    return {"count": count, "organization": organization}
