"""Server-rendered review pages: the live queue, one request, and the history."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import Organization
from agents.selectors import agent_list
from approvals.email_links import CHOICES
from approvals.forms import (
    BulkDecisionForm,
    DecisionForm,
    EmailLinkForm,
    GrantForm,
    HistoryFilterForm,
    QueueFilterForm,
)
from approvals.grants import grant_kinds_allowed
from approvals.models import ApprovalRequest
from approvals.selectors import (
    QUEUE_LIMIT,
    ApprovalFilters,
    agent_recent_calls,
    approval_get_for_org,
    approval_list,
    approval_pending_count,
    approval_pending_neighbours,
    approval_queue,
    approval_queue_actions,
    approval_similar_decisions,
    argument_amount,
    arguments_brief,
    arguments_redacted,
    arguments_rows,
    email_link_review,
    grant_get_for_org,
    grant_list,
)
from approvals.services import (
    NotAnApprover,
    approval_decide,
    approval_decide_bulk,
    approval_decide_by_email_link,
    approval_decider_problem,
    approval_request_get,
    grant_revoke,
    member_can_decide,
)
from audit.selectors import action_explanation
from wardenproject.errors import DomainError, NotFound


def _organization(request: HttpRequest) -> Organization:
    organization = getattr(request, "organization", None)
    if not organization:
        raise Http404("No organisation.")
    return organization


def _queue_item(item: ApprovalRequest) -> dict:
    return {
        "request": item,
        "amount": argument_amount(item.arguments),
        "brief": arguments_brief(item.arguments),
    }


def _queue_context(request: HttpRequest) -> tuple[dict, int]:
    """The queue narrowed by the query string's filters, and the HTTP status: a filter
    that does not parse (a bad amount, an agent of no one) is a form error, 400."""
    organization = _organization(request)
    agents = [(a.public_id, a.name) for a in agent_list(organization=organization)]
    form = QueueFilterForm(request.GET, agents=agents)
    context = {
        "organization": organization,
        "form": form,
        "actions": approval_queue_actions(organization=organization),
        "pending_count": approval_pending_count(organization=organization),
        "can_decide": member_can_decide(user=request.user, organization_id=organization.pk),
        "query": request.GET.urlencode(),
        "filtered": any(v for k, v in request.GET.items() if k != "order"),
    }
    if not form.is_valid():
        context.update(items=[], shown_count=0, invalid=True)
        return context, 400
    queue = approval_queue(organization=organization, filters=form.filters())
    items = [_queue_item(item) for item in queue[:QUEUE_LIMIT]]
    shown_count = len(items) if len(items) < QUEUE_LIMIT else queue.count()
    context.update(items=items, shown_count=shown_count, limit=QUEUE_LIMIT, invalid=False)
    return context, 200


@login_required
@require_GET
def queue(request: HttpRequest) -> HttpResponse:
    context, status = _queue_context(request)
    return render(request, "approvals/queue.html", context, status=status)


@login_required
@require_GET
def queue_fragment(request: HttpRequest) -> HttpResponse:
    """The part of the queue htmx re-fetches every few seconds (with the same filters)."""
    context, status = _queue_context(request)
    return render(request, "approvals/_queue_list.html", context, status=status)


@login_required
@require_GET
def pending_count(request: HttpRequest) -> JsonResponse:
    """The navigation's live count: one indexed COUNT of the organisation's pending
    requests."""
    organization = _organization(request)
    return JsonResponse({"pending_count": approval_pending_count(organization=organization)})


BULK_RESULT_TEXT = {
    "decided": "{action}: {status}.",
    "already_decided": "{action}: already {status}; the decision stands.",
    "already_voted": "{action}: you have already voted on it.",
    "not_allowed": "{action}: not allowed: {detail}",
    "not_found": "{action_id}: no such request in this organisation.",
    "busy": "{action}: not decided: {detail}",
}


@login_required
@require_POST
def queue_decide(request: HttpRequest) -> HttpResponse:
    """Approve or reject the selected requests with one note; a message per request says
    what became of it."""
    organization = _organization(request)
    form = BulkDecisionForm(request.POST)
    back = request.POST.get("next_query", "")
    target = redirect("approvals:queue")
    if back and len(back) < 1000:
        target["Location"] += f"?{back}"
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
        return target
    try:
        outcomes = approval_decide_bulk(
            organization=organization,
            action_ids=form.cleaned_data["action_ids"],
            actor_user=request.user,
            approve=form.cleaned_data["decision"] == "approve",
            notes=form.cleaned_data["notes"],
            source="web",
        )
    except DomainError as error:
        messages.error(request, error.detail)
        return target
    for outcome in outcomes:
        status = outcome.status
        if outcome.result == "decided" and status == ApprovalRequest.Status.PENDING:
            status = "your approval is recorded; more approvals are needed"
        text = BULK_RESULT_TEXT[outcome.result].format(
            action=f"{outcome.action} ({outcome.action_id})",
            action_id=outcome.action_id,
            status=status,
            detail=outcome.detail,
        )
        if outcome.result == "decided":
            messages.success(request, text)
        else:
            messages.warning(request, text)
    return target


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
        "is_pending": approval.status == ApprovalRequest.Status.PENDING,
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
    approval = context["approval"]
    entry = approval.check_entry
    context["explanation"] = action_explanation(entry=entry) if entry is not None else None
    context["previous_id"], context["next_id"] = approval_pending_neighbours(
        organization=approval.organization, approval=approval
    )
    context["recent_calls"] = [
        {
            "entry": call,
            "amount": argument_amount(call.arguments),
            "brief": arguments_brief(call.arguments),
        }
        for call in agent_recent_calls(approval=approval)
    ]
    context["similar_decisions"] = [
        {"request": other, "amount": argument_amount(other.arguments)}
        for other in approval_similar_decisions(approval=approval)
    ]
    context["amount"] = argument_amount(approval.arguments)
    return render(request, "approvals/detail.html", context)


@login_required
@require_GET
def detail_status(request: HttpRequest, action_id: str) -> HttpResponse:
    """The status block of the detail page, re-fetched so others' votes show up live.

    Once the request is decided (by someone else, or the clock) it also replaces the
    decision form out of band with who decided and when, so no stale button remains."""
    context = _detail_context(request, action_id)
    context["refresh"] = True
    return render(request, "approvals/_detail_status.html", context)


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


@never_cache
@require_http_methods(["GET", "POST"])
def email_link(request: HttpRequest, choice: str, token: str) -> HttpResponse:
    """An email's Approve / Reject link, without a session: GET shows the request and asks
    to confirm (it decides nothing, so a mail scanner that follows it changes nothing); the
    form's POST (CSRF-protected by the cookie the page sets) decides as the reviewer."""
    if choice not in CHOICES:
        raise Http404("No such page.")
    form = EmailLinkForm(request.POST or None)
    # Read with every kind so that one the rule does not allow is refused by the decision
    # service, naming the rule, rather than dropped silently.
    grant_form = GrantForm(request.POST or None, kinds=("identical", "session", "amount"))
    decided = None
    error = ""
    status = 200
    if request.method == "POST":
        if choice == "approve" and not grant_form.is_valid():
            error, status = "The approval to remember is not valid; nothing was decided.", 400
        else:
            try:
                decided = approval_decide_by_email_link(
                    token=token,
                    approve=choice == "approve",
                    notes=form.cleaned_data["notes"] if form.is_valid() else "",
                    grant=grant_form.grant() if choice == "approve" else None,
                )
            except DomainError as exc:
                error, status = exc.detail, exc.status
    review = email_link_review(token=token)
    approval = decided or review.request
    offered = grant_kinds_allowed(approval) if choice == "approve" and approval is not None else ()
    return render(
        request,
        "approvals/email_link.html",
        {
            "choice": choice,
            "other": "reject" if choice == "approve" else "approve",
            "token": token,
            "form": form,
            "grant_form": GrantForm(request.POST or None, kinds=offered) if offered else None,
            "approve_only": True,
            "grants": grant_list(organization=decided.organization, request=decided)
            if decided is not None and choice == "approve"
            else [],
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
