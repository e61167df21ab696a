"""Server-rendered review pages: the live queue, one request, and the history."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import Organization
from approvals.email_links import CHOICES
from approvals.forms import DecisionForm, EmailLinkForm, HistoryFilterForm
from approvals.models import ApprovalRequest
from approvals.selectors import (
    ApprovalFilters,
    approval_get_for_org,
    approval_list,
    approval_pending_count,
    arguments_redacted,
    arguments_rows,
    email_link_review,
)
from approvals.services import (
    NotAnApprover,
    approval_decide,
    approval_decide_by_email_link,
    approval_decider_problem,
    approval_request_get,
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
    routing = (
        approval_decider_problem(request=approval, user=request.user)
        if can_decide and approval.approvers and approval.status == ApprovalRequest.Status.PENDING
        else None
    )
    return {
        "approval": approval,
        "routing_problem": routing.detail if routing is not None else "",
        "can_decide": can_decide
        and routing is None
        and approval.status == ApprovalRequest.Status.PENDING,
        "is_reviewer": can_decide,
        "arguments": arguments_rows(approval.arguments),
        "approvals": [v for v in votes if v.vote == v.Vote.APPROVE],
        "votes": votes,
        "form": DecisionForm(),
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
    try:
        decided = approval_decide(
            request_or_action_id=action_id,
            actor_user=request.user,
            approve=approve,
            notes=form.cleaned_data["notes"],
            source="web",
        )
    except NotAnApprover:
        raise  # 403, with the request's approvers named
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


@never_cache
@require_http_methods(["GET", "POST"])
def email_link(request: HttpRequest, choice: str, token: str) -> HttpResponse:
    """An email's Approve / Reject link, without a session: GET shows the request and asks
    to confirm (it decides nothing, so a mail scanner that follows it changes nothing); the
    form's POST (CSRF-protected by the cookie the page sets) decides as the reviewer."""
    if choice not in CHOICES:
        raise Http404("No such page.")
    form = EmailLinkForm(request.POST or None)
    decided = None
    error = ""
    status = 200
    if request.method == "POST":
        try:
            decided = approval_decide_by_email_link(
                token=token,
                approve=choice == "approve",
                notes=form.cleaned_data["notes"] if form.is_valid() else "",
            )
        except DomainError as exc:
            error, status = exc.detail, exc.status
    review = email_link_review(token=token)
    approval = decided or review.request
    return render(
        request,
        "approvals/email_link.html",
        {
            "choice": choice,
            "other": "reject" if choice == "approve" else "approve",
            "token": token,
            "form": form,
            "approval": approval,
            "decided": decided,
            "reviewer_email": review.reviewer_email,
            "problem": error or ("" if decided else review.problem),
            "arguments": arguments_rows(arguments_redacted(approval.arguments, approval.redact))
            if approval is not None
            else [],
        },
        status=status if error else (200 if decided else review.status),
    )
