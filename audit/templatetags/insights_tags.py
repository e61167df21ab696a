from __future__ import annotations

from django import template
from django.utils.html import conditional_escape
from django.utils.safestring import mark_safe

register = template.Library()


@register.filter
def duration(seconds: float | None) -> str:
    """A number of seconds in words: "45 s", "3 min 20 s", "2 h 5 min", "3 d 4 h"."""
    if seconds is None:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


@register.filter
def usd(value: float | int | None) -> str:
    """A cost in dollars: cents under $100 shown to 4 places when small."""
    amount = float(value or 0)
    if 0 < amount < 0.01:
        return f"${amount:.4f}"
    return f"${amount:,.2f}"


@register.filter
def break_at_at(value: str) -> str:
    """An email address that may wrap before its "@" (and nowhere else)."""
    local, at, domain = str(value).partition("@")
    if not at:
        return conditional_escape(value)
    return mark_safe(f"{conditional_escape(local)}<wbr>@{conditional_escape(domain)}")  # noqa: S308 (escaped)
