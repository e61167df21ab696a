"""Slack's interactivity endpoint and the Slack pages: connecting a workspace, an agent's
channel, and confirming or removing the link between a Slack user and a member."""

from __future__ import annotations

from http import HTTPStatus

from django.conf import settings as django_settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from accounts.permissions import Capability, membership_require, membership_require_by_public_id
from agents.selectors import agent_get
from approvals import slack
from approvals.slack_forms import SlackAgentChannelForm, SlackConnectForm
from wardenproject.errors import DomainError, NotFound


@csrf_exempt
@require_POST
def interactions(request: HttpRequest) -> HttpResponse:
    """Slack's Interactivity Request URL (form-encoded ``payload=``, signed by Slack)."""
    try:
        reply = slack.slack_interaction_handle(body=request.body, headers=request.headers)
    except DomainError as exc:
        return JsonResponse(exc.as_dict(), status=exc.status)
    if reply.body is None:
        return HttpResponse(status=reply.status)
    return JsonResponse(reply.body, status=reply.status)


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_http_methods(["GET", "POST"])
def settings_page(request: HttpRequest, org_id: str) -> HttpResponse:
    membership = membership_require_by_public_id(
        user=request.user, organization_public_id=org_id, capability=Capability.MANAGE_WEBHOOKS
    )
    organization = membership.organization
    connection = slack.slack_connection_get(organization=organization)
    status = HTTPStatus.OK
    if request.method == "POST":
        form = SlackConnectForm(request.POST)
        if form.is_valid():
            try:
                slack.slack_connect(
                    actor=request.user, organization=organization, **form.cleaned_data
                )
            except DomainError as exc:
                if isinstance(exc, Http404 | PermissionDenied):
                    raise
                form.add_error(exc.field if exc.field in form.fields else None, exc.detail)
                status = exc.status
            else:
                messages.success(request, "Slack connected.")
                return redirect("slack:settings", org_id=org_id)
        else:
            status = HTTPStatus.BAD_REQUEST
    else:
        form = SlackConnectForm(
            initial={"default_channel": connection.default_channel if connection else ""}
        )
    interactions_url = django_settings.WARDEN_BASE_URL + reverse("slack:interactions")
    return _no_store(
        render(
            request,
            "approvals/slack_settings.html",
            {
                "organization": organization,
                "connection": connection,
                "form": form,
                "interactions_url": interactions_url,
            },
            status=status,
        )
    )


@login_required
@require_POST
def disconnect(request: HttpRequest, org_id: str) -> HttpResponse:
    membership = membership_require_by_public_id(
        user=request.user, organization_public_id=org_id, capability=Capability.MANAGE_WEBHOOKS
    )
    if slack.slack_disconnect(actor=request.user, organization=membership.organization):
        messages.success(request, "Slack disconnected.")
    return redirect("slack:settings", org_id=org_id)


@login_required
@require_POST
def agent_channel(request: HttpRequest, agent_id: str) -> HttpResponse:
    membership = membership_require(
        user=request.user,
        organization=getattr(request, "organization", None),
        capability=Capability.MANAGE_AGENTS,
    )
    agent = agent_get(organization=membership.organization, ref=agent_id)
    form = SlackAgentChannelForm(request.POST)
    if form.is_valid():
        try:
            slack.slack_agent_channel_set(
                actor=request.user, agent=agent, channel=form.cleaned_data["slack_channel"]
            )
        except DomainError as exc:
            messages.error(request, exc.detail)
        else:
            messages.success(request, "Slack channel saved.")
    else:
        messages.error(request, "The Slack channel is too long.")
    return redirect(reverse("agents:detail", args=[agent.public_id]) + "#settings")


@login_required
@require_http_methods(["GET", "POST"])
def link(request: HttpRequest, token: str) -> HttpResponse:
    """The page a one-time link from Slack opens: the member confirms with a POST (a GET,
    such as a link preview, changes nothing)."""
    try:
        offer = slack.slack_link_read(user=request.user, token=token)
    except NotFound as exc:
        return render(
            request,
            "approvals/slack_link.html",
            {"problem": exc.detail},
            status=HTTPStatus.NOT_FOUND,
        )
    if request.method == "POST":
        try:
            slack.slack_link_confirm(user=request.user, token=token)
        except DomainError as exc:
            return render(
                request,
                "approvals/slack_link.html",
                {"problem": exc.detail},
                status=HTTPStatus.CONFLICT,
            )
        messages.success(request, "Your Slack account is linked: its clicks now act as you.")
        return redirect("profile")
    return _no_store(render(request, "approvals/slack_link.html", {"offer": offer}))


@login_required
@require_POST
def link_remove(request: HttpRequest, link_id: int) -> HttpResponse:
    try:
        slack.slack_link_remove(user=request.user, link_id=link_id)
    except NotFound as exc:
        raise Http404(exc.detail) from None
    messages.success(request, "Slack account unlinked.")
    return redirect("profile")
