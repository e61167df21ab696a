"""Helpers shared by the management commands (interfaces: parse input, call a selector)."""

from __future__ import annotations

from django.core.management.base import CommandError

from accounts.models import Organization
from accounts.selectors import organization_get_by_ref
from wardenproject.errors import DomainError


def organization_from(ref: str) -> Organization:
    """``--org ORG``: a public id or an exact, unambiguous name; CommandError otherwise."""
    try:
        return organization_get_by_ref(ref=ref)
    except DomainError as exc:
        raise CommandError(exc.detail) from None
