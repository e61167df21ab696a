"""Template filters for the delivery log: request and response bodies made readable."""

from __future__ import annotations

import json

from django import template
from django.template.defaultfilters import filesizeformat

register = template.Library()


@register.filter
def pretty_json(text: str) -> str:
    """``text`` indented if it is JSON, unchanged otherwise (a receiver's HTML error page)."""
    if not text:
        return ""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return text


@register.filter
def body_size(text: str) -> str:
    """The size of ``text`` as sent (UTF-8), e.g. "1.2 KB"."""
    return filesizeformat(len((text or "").encode()))
