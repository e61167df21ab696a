"""Server-rendered review pages: the live queue, one request, and the history."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.models import Organization
from approvals.forms import DecisionForm, GrantForm, HistoryFilterForm
from approvals.grants import grant_kinds_allowed
from approvals.models import ApprovalRequest
from approvals.selectors import (
    ApprovalFilters,
    approval_get_for_org,
    approval_list,
    approval_pending_count,
    arguments_rows,
    grant_get_for_org,
)
from approvals.services import (
    approval_decide,
    approval_request_get,
    grant_revoke,
    member_can_decide,
)
from audit.selectors import action_explanation
from wardenproject.errors import DomainError, NotFound

QUEUE_LIMIT = 100


def _organization(request: HttpRequest) -> Organization:
    organization = getattr(request, "organization", None)
    if not organization:
        raise Http404("No organisation.")
    return organization


def _queue_context(request: HttpRequest) -> dict:
    organization = _organization(request)
    pending = approval_list(
        organization=organization, filters=ApprovalFilters(status=ApprovalRequest.Status.PENDING)
    )[:QUEUE_LIMIT]
    return {
        "organization": organization,
        "pending": pending,
        "pending_count": approval_pending_count(organization=organization),
    }


@login_required
@require_GET
def queue(request: HttpRequest) -> HttpResponse:
    return render(request, "approvals/queue.html", _queue_context(request))


@login_required
@require_GET
def queue_fragment(request: HttpRequest) -> HttpResponse:
    """The part of the queue htmx re-fetches every few seconds."""
    return render(request, "approvals/_queue_list.html", _queue_context(request))


def _request_for_member(request: HttpRequest, action_id: str) -> tuple[ApprovalRequest, bool]:
    """The request if the user is a member of its organisation (else 404), and whether
    they may decide it."""
    try:
        found = approval_request_get(action_id)
        can_decide = member_can_decide(user=request.user, organization_id=found.organization_id)
        return approval_get_for_org(organization=found.organization, action_id=action_id), (
            can_decide
        )
    except NotFound:
        raise Http404("No such approval request.") from None


def _detail_context(request: HttpRequest, action_id: str) -> dict:
    approval, can_decide = _request_for_member(request, action_id)
    votes = list(approval.votes.all())
    return {
        "approval": approval,
        "can_decide": can_decide and approval.status == ApprovalRequest.Status.PENDING,
        "is_reviewer": can_decide,
        "arguments": arguments_rows(approval.arguments),
        "approvals": [v for v in votes if v.vote == v.Vote.APPROVE],
        "votes": votes,
        "form": DecisionForm(),
        "grant_form": GrantForm(kinds=grant_kinds_allowed(approval)) if can_decide else None,
    }


@login_required
@require_GET
def detail(request: HttpRequest, action_id: str) -> HttpResponse:
    context = _detail_context(request, action_id)
    entry = context["approval"].check_entry
    context["explanation"] = action_explanation(entry=entry) if entry is not None else None
    return render(request, "approvals/detail.html", context)


@login_required
@require_GET
def detail_status(request: HttpRequest, action_id: str) -> HttpResponse:
    """The status block of the detail page, re-fetched so others' votes show up live."""
    return render(request, "approvals/_detail_status.html", _detail_context(request, action_id))


@login_required
@require_POST
def decide(request: HttpRequest, action_id: str) -> HttpResponse:
    _approval, can_decide = _request_for_member(request, action_id)
    if not can_decide:
        raise PermissionDenied("Viewers cannot decide approval requests.")
    form = DecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose Approve or Reject.")
        return redirect("approvals:detail", action_id=action_id)
    approve = form.cleaned_data["decision"] == "approve"
    grant_form = GrantForm(request.POST, kinds=("identical", "session", "amount"))
    if not grant_form.is_valid():  # nothing is decided with a grant that cannot be read
        messages.error(request, "The approval to remember is not valid; nothing was decided.")
        return redirect("approvals:detail", action_id=action_id)
    grant = grant_form.grant() if approve else None
    try:
        decided = approval_decide(
            request_or_action_id=action_id,
            actor_user=request.user,
            approve=approve,
            notes=form.cleaned_data["notes"],
            source="web",
            grant=grant,
        )
    except DomainError as error:
        messages.error(request, error.detail)
    else:
        if decided.status == ApprovalRequest.Status.PENDING:
            messages.success(request, "Your approval is recorded; more approvals are needed.")
        else:
            messages.success(request, f"{decided.action}: {decided.get_status_display()}.")
    return redirect("approvals:detail", action_id=action_id)


@login_required
@require_GET
def history(request: HttpRequest) -> HttpResponse:
    organization = _organization(request)
    form = HistoryFilterForm(request.GET or None)
    filters = form.filters() if request.GET else ApprovalFilters()
    page = Paginator(approval_list(organization=organization, filters=filters), 50).get_page(
        request.GET.get("page")
    )
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "approvals/history.html",
        {"form": form, "page": page, "query": query.urlencode(), "organization": organization},
    )


@login_required
@require_POST
def revoke_grant(request: HttpRequest, grant_id: str) -> HttpResponse:
    """The agent page's Revoke button: the grant stops applying at once."""
    try:
        grant = grant_get_for_org(organization=_organization(request), public_id=grant_id)
    except NotFound:
        raise Http404("No such grant.") from None
    try:
        grant_revoke(grant=grant, actor_user=request.user, source="web")
    except NotFound:
        raise Http404("No such grant.") from None
    except DomainError as error:
        raise PermissionDenied(error.detail) from None
    messages.success(request, f"Grant {grant.public_id} revoked: it allows nothing more.")
    return redirect(reverse("agents:detail", args=[grant.agent.public_id]) + "#grants")
