"""Who may call what. For the approvals helper and every API view of Warden.

- ``api_principal(request)``: the ``ApiPrincipal`` of a keyed request, else None.
- ``request_organization(request)``: the organisation of the key, or the session user's
  current organisation (None when neither).
- ``IsAgentKey``: agent keys only.
- ``IsAgentOrOrgKey``: agent or organisation keys (checks, outcomes, token usage, SDK log).
- ``IsApproverKey``: approver keys only.
- ``IsApproverKeyOrReviewer``: approver keys, or a logged-in owner/admin/approver of the
  current organisation (deciding and listing approvals). Agent and org keys get 403.
- ``IsCallerOfActions``: agent keys, org keys, or any logged-in member (reading actions).
- ``IsMemberOrOrgOrApproverKey``: members of any role, org keys and approver keys (reading
  grants; agent keys get 403).
- ``IsMember``: logged-in member of the current organisation, any role (reading config).
- ``IsManager``: logged-in owner or admin of the current organisation (changing config).
- ``IsWebhookManager``: logged-in member whose role manages webhooks (owner, admin).

Approver keys are refused (403) by every class except the three approver ones.
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from accounts.models import Organization
from accounts.permissions import Capability, role_has
from accounts.selectors import membership_role_get
from agents.runtime import ApiPrincipal


def api_principal(request: Request) -> ApiPrincipal | None:
    auth = getattr(request, "auth", None)
    return auth if isinstance(auth, ApiPrincipal) else None


def request_organization(request: Request) -> Organization | None:
    principal = api_principal(request)
    if principal is not None:
        return principal.organization
    user = getattr(request, "user", None)
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    organization = getattr(request._request, "organization", None)
    return organization if organization else None


def request_role(request: Request) -> str | None:
    """The session user's role in their current organisation (memoised on the request)."""
    if api_principal(request) is not None:
        return None
    cached = getattr(request._request, "_warden_role", "unset")
    if cached != "unset":
        return cached
    organization = request_organization(request)
    role = None
    if organization is not None:
        role = membership_role_get(user=request.user, organization_id=organization.pk)
    request._request._warden_role = role
    return role


class _KeyKinds(BasePermission):
    """Keys of ``kinds``, or logged-in members whose role has ``capability``
    (the role table is accounts.permissions)."""

    kinds: frozenset[str] = frozenset()
    capability: Capability | None = None
    message = "This key or account may not do that."

    def has_permission(self, request: Request, view: Any) -> bool:
        principal = api_principal(request)
        if principal is not None:
            return principal.kind in self.kinds
        if self.capability is None:
            return False
        role = request_role(request)
        return role is not None and role_has(role, self.capability)


class IsAgentKey(_KeyKinds):
    kinds = frozenset({"agent"})


class IsAgentOrOrgKey(_KeyKinds):
    kinds = frozenset({"agent", "org"})


class IsApproverKey(_KeyKinds):
    kinds = frozenset({"approver"})


class IsApproverKeyOrReviewer(_KeyKinds):
    kinds = frozenset({"approver"})
    capability = Capability.DECIDE_APPROVALS


class IsMemberOrOrgKey(_KeyKinds):
    """Members (any role) and organisation keys: what a log collector reads with."""

    kinds = frozenset({"org"})
    capability = Capability.READ


class IsMemberOrOrgOrApproverKey(_KeyKinds):
    """Reading remembered approvals (grants): agent keys may not see what they are allowed."""

    kinds = frozenset({"org", "approver"})
    capability = Capability.READ


class IsCallerOfActions(_KeyKinds):
    kinds = frozenset({"agent", "org"})
    capability = Capability.READ


class IsMember(_KeyKinds):
    capability = Capability.READ


class IsManager(_KeyKinds):
    capability = Capability.MANAGE_AGENTS


class IsWebhookManager(_KeyKinds):
    capability = Capability.MANAGE_WEBHOOKS


class IsMemberManager(_KeyKinds):
    capability = Capability.MANAGE_MEMBERS
