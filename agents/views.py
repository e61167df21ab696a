"""Server-rendered pages for agents, rules, keys, policy documents, simulation and the audit
log: thin adapters over agents.services and the selectors.

Every page works in the current organisation (``request.organization``). Members read;
owners and admins write (others get 403 on POST); an object of another organisation is 404.
A secret key is rendered in the response that created it and never again.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import Membership
from accounts.permissions import Capability, membership_has, membership_require
from agents import selectors, services
from agents.backtest import agent_policy_backtest
from agents.forms import (
    AgentCreateForm,
    AgentSettingsForm,
    AuditFilterForm,
    BacktestForm,
    KeyCreateForm,
    KeyRotateForm,
    OrgKeyCreateForm,
    PolicyForm,
    PolicyVersionRestoreForm,
    RuleForm,
    SimulateForm,
    rule_conditions_text,
)
from agents.key_examples import key_examples
from agents.models import Agent, ApiKey, PolicyVersion
from agents.policy import ENFORCE, SHADOW
from agents.policy_document import PolicyDocumentError, PolicyError
from agents.shadow import shadow_stats
from approvals.selectors import arguments_rows, grant_list
from approvals.slack import slack_agent_channel_get
from audit.selectors import action_detail, audit_entry_list, check_entry_get
from wardenproject.errors import DomainError

SOURCE = "web"
AUDIT_PAGE_SIZE = 50
VERSIONS_ON_DETAIL = 5
GRANTS_ON_DETAIL = 50


def _member(request: HttpRequest, capability: Capability = Capability.READ) -> Membership:
    """The user's membership of the current organisation: 404 outsiders, 403 weak roles."""
    return membership_require(
        user=request.user,
        organization=getattr(request, "organization", None),
        capability=capability,
    )


def _manager(request: HttpRequest) -> Membership:
    return _member(request, Capability.MANAGE_AGENTS)


def _agent(membership: Membership, agent_id: str) -> Agent:
    return selectors.agent_get(organization=membership.organization, ref=agent_id)


def _can_manage(membership: Membership) -> bool:
    return membership_has(membership, Capability.MANAGE_AGENTS)


def _no_store(response: HttpResponse) -> HttpResponse:
    """Pages that show a secret are never cached (nor replayed by the back button)."""
    response["Cache-Control"] = "no-store"
    return response


# --- Agent list -----------------------------------------------------------------------------


def _list_page(
    request: HttpRequest,
    membership: Membership,
    *,
    form: AgentCreateForm | None = None,
    error: str | None = None,
    status: int = HTTPStatus.OK,
) -> HttpResponse:
    organization = membership.organization
    return render(
        request,
        "agents/list.html",
        {
            "organization": organization,
            "agents": selectors.agent_list_with_stats(organization=organization),
            "form": form or AgentCreateForm(),
            "error": error,
            "can_manage": _can_manage(membership),
        },
        status=status,
    )


@login_required
@require_GET
def agent_list(request: HttpRequest) -> HttpResponse:
    return _list_page(request, _member(request))


@login_required
@require_POST
def agent_create(request: HttpRequest) -> HttpResponse:
    membership = _manager(request)
    form = AgentCreateForm(request.POST)
    if not form.is_valid():
        return _list_page(request, membership, form=form, status=HTTPStatus.BAD_REQUEST)
    try:
        agent = services.agent_create(
            organization=membership.organization,
            actor=request.user,
            name=form.cleaned_data["name"],
            description=form.cleaned_data["description"],
            default_decision=form.cleaned_data["default_decision"],
            source=SOURCE,
        )
    except DomainError as exc:
        if exc.field in form.fields:
            form.add_error(exc.field, exc.detail)
        return _list_page(request, membership, form=form, error=exc.detail, status=exc.status)
    messages.success(request, f"Agent {agent.name} created. Add a key to start checking calls.")
    return redirect("agents:detail", agent_id=agent.public_id)


# --- Agent detail: settings, rules, keys, policy ---------------------------------------------


def _detail_page(
    request: HttpRequest,
    membership: Membership,
    agent: Agent,
    *,
    status: int = HTTPStatus.OK,
    **overrides: Any,
) -> HttpResponse:
    organization = membership.organization
    context: dict[str, Any] = {
        "organization": organization,
        "agent": agent,
        "can_manage": _can_manage(membership),
        "settings_form": AgentSettingsForm(
            initial={
                "name": agent.name,
                "description": agent.description,
                "default_decision": agent.default_decision,
                "enforcement": agent.enforcement,
                "is_active": agent.is_active,
            }
        ),
        "rules": [
            (rule, selectors.rule_detail(rule), rule_conditions_text(rule.document))
            for rule in selectors.rule_list(organization=organization, agent=agent)
        ],
        "rule_form": RuleForm(),
        "keys": selectors.api_key_list(organization=organization, agent=agent),
        "key_form": KeyCreateForm(),
        "rotate_form": KeyRotateForm(),
        "policy_form": PolicyForm(initial={"document": services.policy_export(agent=agent)}),
        "policy_errors": None,
        "versions": selectors.policy_version_page(agent=agent, limit=VERSIONS_ON_DETAIL)[0],
        "grants": grant_list(organization=organization, for_agent=agent, active=True)[
            :GRANTS_ON_DETAIL
        ],
        "can_revoke_grants": membership_has(membership, Capability.DECIDE_APPROVALS),
        "backtest": None,
        "error": None,
        "slack_channel": slack_agent_channel_get(agent=agent),
    }
    context.update(overrides)
    return render(request, "agents/detail.html", context, status=status)


@login_required
@require_GET
def agent_detail(request: HttpRequest, agent_id: str) -> HttpResponse:
    membership = _member(request)
    return _detail_page(request, membership, _agent(membership, agent_id))


@login_required
@require_POST
def agent_settings(request: HttpRequest, agent_id: str) -> HttpResponse:
    membership = _manager(request)
    agent = _agent(membership, agent_id)
    form = AgentSettingsForm(request.POST)
    if not form.is_valid():
        return _detail_page(
            request, membership, agent, settings_form=form, status=HTTPStatus.BAD_REQUEST
        )
    try:
        agent = services.agent_update(
            agent=agent, actor=request.user, source=SOURCE, **form.cleaned_data
        )
    except DomainError as exc:
        field = "default_decision" if exc.field == "default" else exc.field
        form.add_error(field if field in form.fields else None, exc.detail)
        return _detail_page(request, membership, agent, settings_form=form, status=exc.status)
    messages.success(request, "Agent settings saved.")
    return redirect("agents:detail", agent_id=agent.public_id)


@login_required
@require_POST
def rule_create(request: HttpRequest, agent_id: str) -> HttpResponse:
    membership = _manager(request)
    agent = _agent(membership, agent_id)
    form = RuleForm(request.POST)
    status = HTTPStatus.BAD_REQUEST
    if form.is_valid():
        try:
            rule = services.rule_create(
                organization=membership.organization,
                agent=agent,
                data=form.rule_data(),
                actor=request.user,
                source=SOURCE,
            )
        except DomainError as exc:
            form.add_service_error(exc)
            status = exc.status
        else:
            messages.success(request, f"Rule {rule.name} added.")
            return redirect(reverse("agents:detail", args=[agent.public_id]) + "#rules")
    return _detail_page(
        request,
        membership,
        agent,
        rule_form=form,
        error="The rule was not saved: correct the fields marked below.",
        status=status,
    )


@login_required
@require_http_methods(["GET", "POST"])
def rule_edit(request: HttpRequest, agent_id: str, rule_id: str) -> HttpResponse:
    membership = _member(request) if request.method == "GET" else _manager(request)
    agent = _agent(membership, agent_id)
    rule = selectors.rule_get(organization=membership.organization, public_id=rule_id, agent=agent)
    status = HTTPStatus.OK
    if request.method == "POST":
        form = RuleForm(request.POST)
        status = HTTPStatus.BAD_REQUEST
        if form.is_valid():
            try:
                rule = services.rule_update(
                    rule=rule, data=form.rule_changes(), actor=request.user, source=SOURCE
                )
            except DomainError as exc:
                form.add_service_error(exc)
                status = exc.status
            else:
                messages.success(request, f"Rule {rule.name} saved.")
                return redirect(reverse("agents:detail", args=[agent.public_id]) + "#rules")
    else:
        form = RuleForm.from_document(selectors.rule_detail(rule))
    shadow = rule.document.get("mode") == SHADOW
    return render(
        request,
        "agents/rule_edit.html",
        {
            "agent": agent,
            "rule": rule,
            "form": form,
            "can_manage": _can_manage(membership),
            "shadow": shadow,
            "shadow_stats": _stats_rows(shadow_stats(rule=rule)) if shadow else None,
            "routing_warnings": selectors.rules_routing_warnings(
                organization=membership.organization,
                rules=[(rule.name, rule.document.get("approval") or {})],
            ),
        },
        status=status,
    )


def _stats_rows(stats: dict[str, Any]) -> dict[str, Any]:
    """The shadow stats as the rule page's table shows them: one row per window, one column
    per transition seen in any window."""
    windows = [(name, stats[name]) for name in ("1d", "7d", "30d")]
    transitions = sorted({t for _, window in windows for t in window["transitions"]})
    return {
        "as_of": stats["as_of"],
        "transitions": transitions,
        "rows": [
            {
                "window": name,
                "matched": window["matched"],
                "changed": window["changed"],
                "counts": [window["transitions"].get(t, 0) for t in transitions],
            }
            for name, window in windows
        ],
    }


@login_required
@require_POST
def rule_promote(request: HttpRequest, agent_id: str, rule_id: str) -> HttpResponse:
    """One click: a shadow rule starts enforcing (``mode: enforce``)."""
    membership = _manager(request)
    agent = _agent(membership, agent_id)
    rule = selectors.rule_get(organization=membership.organization, public_id=rule_id, agent=agent)
    try:
        rule = services.rule_update(
            rule=rule, data={"mode": ENFORCE}, actor=request.user, source=SOURCE
        )
    except DomainError as exc:
        messages.error(request, exc.detail)
        return redirect("agents:rule_edit", agent_id=agent.public_id, rule_id=rule.public_id)
    messages.success(request, f"Rule {rule.name} now enforces.")
    return redirect(reverse("agents:detail", args=[agent.public_id]) + "#rules")


@login_required
@require_POST
def rule_delete(request: HttpRequest, agent_id: str, rule_id: str) -> HttpResponse:
    membership = _manager(request)
    agent = _agent(membership, agent_id)
    rule = selectors.rule_get(organization=membership.organization, public_id=rule_id, agent=agent)
    services.rule_delete(rule=rule, actor=request.user, source=SOURCE)
    messages.success(request, f"Rule {rule.name} deleted.")
    return redirect(reverse("agents:detail", args=[agent.public_id]) + "#rules")


@login_required
@require_POST
def rule_toggle(request: HttpRequest, agent_id: str, rule_id: str) -> HttpResponse:
    membership = _manager(request)
    agent = _agent(membership, agent_id)
    rule = selectors.rule_get(organization=membership.organization, public_id=rule_id, agent=agent)
    enabled = request.POST.get("enabled") == "1"
    try:
        rule = services.rule_update(
            rule=rule, data={"enabled": enabled}, actor=request.user, source=SOURCE
        )
    except DomainError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, f"Rule {rule.name} {'enabled' if enabled else 'disabled'}.")
    return redirect(reverse("agents:detail", args=[agent.public_id]) + "#rules")


@login_required
@require_POST
def policy_apply(request: HttpRequest, agent_id: str) -> HttpResponse:
    membership = _manager(request)
    agent = _agent(membership, agent_id)
    form = PolicyForm(request.POST)
    if not form.is_valid():
        return _detail_page(
            request, membership, agent, policy_form=form, status=HTTPStatus.BAD_REQUEST
        )
    try:
        document = services.policy_document_parse(
            organization=membership.organization, text=form.cleaned_data["document"], format=None
        )
    except PolicyDocumentError as exc:
        errors = exc.errors
    else:
        errors = []
        if document.agent != agent.name:
            errors = [
                PolicyError(
                    None, "agent", f"the document is for {document.agent!r}, not {agent.name!r}"
                )
            ]
    if errors:
        return _detail_page(
            request,
            membership,
            agent,
            policy_form=form,
            policy_errors=errors,
            status=HTTPStatus.BAD_REQUEST,
        )
    agent = services.policy_import(
        organization=membership.organization,
        document=document,
        actor=request.user,
        agent=agent,
        source=SOURCE,
        note=form.cleaned_data["note"],
    )
    count = len(document.rules)
    messages.success(request, f"Policy applied: {count} rule{'s' if count != 1 else ''}.")
    return redirect(reverse("agents:detail", args=[agent.public_id]) + "#policy")


@login_required
@require_POST
def policy_backtest(request: HttpRequest, agent_id: str) -> HttpResponse:
    """The policy editor's "Test against the last N days": the unsaved document replayed
    against the agent's recorded calls. Reads only (members may use it)."""
    membership = _member(request)
    agent = _agent(membership, agent_id)
    form = BacktestForm(request.POST)
    policy_form = PolicyForm(request.POST)
    if not form.is_valid():
        return _detail_page(
            request, membership, agent, policy_form=policy_form, status=HTTPStatus.BAD_REQUEST
        )
    days = form.cleaned_data["days"]
    try:
        result = agent_policy_backtest(
            agent=agent, policy=form.cleaned_data["document"], since=f"{days}d"
        )
    except DomainError as exc:
        problems = exc.extra.get("errors")
        errors = (
            [PolicyError(**problem) for problem in problems]
            if problems
            else [PolicyError(None, exc.field, exc.detail)]
        )
        return _detail_page(
            request,
            membership,
            agent,
            policy_form=policy_form,
            policy_errors=errors,
            status=exc.status,
        )
    return _detail_page(
        request,
        membership,
        agent,
        policy_form=policy_form,
        backtest={**result, "days": days},
    )


@login_required
@require_GET
def policy_download(request: HttpRequest, agent_id: str) -> HttpResponse:
    agent = _agent(_member(request), agent_id)
    response = HttpResponse(
        services.policy_export(agent=agent, format="yaml"),
        content_type="application/yaml; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="{agent.public_id}.yaml"'
    return response


# --- Policy versions ------------------------------------------------------------------------


def _diff_lines(diff: str) -> list[tuple[str, str]]:
    """A unified diff's lines with the class that colours them (added, removed, hunk)."""
    lines = []
    for line in diff.splitlines():
        if line.startswith(("+++", "---")):
            kind = "diff-file"
        elif line.startswith("@@"):
            kind = "diff-hunk"
        elif line.startswith("+"):
            kind = "diff-add"
        elif line.startswith("-"):
            kind = "diff-del"
        else:
            kind = ""
        lines.append((kind, line))
    return lines


def _version(agent: Agent, number: str) -> PolicyVersion:
    if not number.isascii() or not number.isdigit() or len(number) > 9:
        raise Http404("No such policy version.")
    return selectors.policy_version_get(agent=agent, number=int(number))


def _page_number(raw: str | None) -> int | None:
    if raw and raw.isascii() and raw.isdigit() and len(raw) <= 9:
        return int(raw)
    return None


@login_required
@require_GET
def policy_versions(request: HttpRequest, agent_id: str) -> HttpResponse:
    """The agent's versions, newest first, each with its diff against the one before it."""
    membership = _member(request)
    agent = _agent(membership, agent_id)
    versions, next_before = selectors.policy_version_page(
        agent=agent, before=_page_number(request.GET.get("before"))
    )
    previous = None
    if versions and versions[-1].number > 1:
        previous = selectors.policy_version_get(agent=agent, number=versions[-1].number - 1)
    rows = []
    for index, version in enumerate(versions):
        against = versions[index + 1] if index + 1 < len(versions) else previous
        diff = selectors.policy_version_diff(version=version, against=against)
        rows.append((version, _diff_lines(diff)))
    return render(
        request,
        "agents/versions.html",
        {
            "agent": agent,
            "rows": rows,
            "next_before": next_before,
            "latest": selectors.policy_version_latest_number(agent=agent),
            "can_manage": _can_manage(membership),
        },
    )


@login_required
@require_GET
def policy_version_detail(request: HttpRequest, agent_id: str, number: str) -> HttpResponse:
    membership = _member(request)
    agent = _agent(membership, agent_id)
    version = _version(agent, number)
    against = None
    against_number = _page_number(request.GET.get("against"))
    if against_number is not None:
        against = selectors.policy_version_get(agent=agent, number=against_number)
    elif version.number > 1:
        against = selectors.policy_version_get(agent=agent, number=version.number - 1)
    diff = selectors.policy_version_diff(version=version, against=against)
    return render(
        request,
        "agents/version_detail.html",
        {
            "agent": agent,
            "version": version,
            "against": against,
            "diff": _diff_lines(diff),
            "document": selectors.policy_version_text(version),
            "organization_rules": version.organization_rules,
            "latest": selectors.policy_version_latest_number(agent=agent),
            "can_manage": _can_manage(membership),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def policy_version_restore(request: HttpRequest, agent_id: str, number: str) -> HttpResponse:
    """GET: what restoring the version would change, and the form that confirms it (owners
    and admins); POST: restore it, as a new version."""
    membership = _manager(request)
    agent = _agent(membership, agent_id)
    version = _version(agent, number)
    form = PolicyVersionRestoreForm(request.POST if request.method == "POST" else None)
    status = HTTPStatus.OK
    error = None
    if request.method == "POST":
        status = HTTPStatus.BAD_REQUEST
        if form.is_valid():
            try:
                restored = services.policy_version_restore(
                    agent=agent,
                    number=version.number,
                    actor=request.user,
                    note=form.cleaned_data["note"],
                    source=SOURCE,
                )
            except DomainError as exc:
                error = exc.detail
                status = exc.status
            else:
                messages.success(
                    request,
                    f"Version {version.number} restored as version {restored.number}.",
                )
                return redirect(reverse("agents:detail", args=[agent.public_id]) + "#versions")
    latest_number = selectors.policy_version_latest_number(agent=agent)
    current = (
        selectors.policy_version_get(agent=agent, number=latest_number)
        if latest_number is not None
        else None
    )
    # What the restore changes: from the live version to this one.
    diff = selectors.policy_version_diff(version=version, against=current)
    return render(
        request,
        "agents/version_restore.html",
        {
            "agent": agent,
            "version": version,
            "current": current,
            "diff": _diff_lines(diff),
            "form": form,
            "error": error,
        },
        status=status,
    )


# --- Keys -----------------------------------------------------------------------------------


def _key_shown_once(
    request: HttpRequest, api_key: ApiKey, raw_key: str, previous: ApiKey | None = None
) -> HttpResponse:
    back = (
        reverse("agents:detail", args=[api_key.agent.public_id]) + "#keys"
        if api_key.agent_id
        else reverse("agents:org_keys")
    )
    agent_name = api_key.agent.name if api_key.agent_id else ""
    if api_key.kind == ApiKey.Kind.ORG:
        first = selectors.agent_list(organization=api_key.organization).first()
        agent_name = first.name if first else ""
    examples = key_examples(
        kind=api_key.kind,
        key=raw_key,
        base_url=request.build_absolute_uri("/"),
        agent_name=agent_name,
    )
    response = render(
        request,
        "agents/key_created.html",
        {
            "api_key": api_key,
            "raw_key": raw_key,
            "previous": previous,
            "back": back,
            "examples": examples,
        },
    )
    return _no_store(response)


@login_required
@require_POST
def agent_key_create(request: HttpRequest, agent_id: str) -> HttpResponse:
    membership = _manager(request)
    agent = _agent(membership, agent_id)
    form = KeyCreateForm(request.POST)
    if not form.is_valid():
        return _detail_page(
            request, membership, agent, key_form=form, status=HTTPStatus.BAD_REQUEST
        )
    try:
        api_key, raw_key = services.api_key_create(
            organization=membership.organization,
            kind=ApiKey.Kind.AGENT,
            agent=agent,
            environment=form.cleaned_data["environment"],
            name=form.cleaned_data["name"],
            actor=request.user,
            source=SOURCE,
        )
    except DomainError as exc:
        form.add_error(exc.field if exc.field in form.fields else None, exc.detail)
        return _detail_page(request, membership, agent, key_form=form, status=exc.status)
    return _key_shown_once(request, api_key, raw_key)


def _key_back(api_key: ApiKey) -> HttpResponse:
    if api_key.agent_id:
        return redirect(reverse("agents:detail", args=[api_key.agent.public_id]) + "#keys")
    return redirect("agents:org_keys")


@login_required
@require_POST
def key_revoke(request: HttpRequest, key_id: str) -> HttpResponse:
    membership = _manager(request)
    api_key = selectors.api_key_get(organization=membership.organization, public_id=key_id)
    api_key = services.api_key_revoke(api_key=api_key, actor=request.user, source=SOURCE)
    messages.success(request, f"Key {api_key.name} ({api_key.prefix}…) revoked.")
    return _key_back(api_key)


@login_required
@require_POST
def key_rotate(request: HttpRequest, key_id: str) -> HttpResponse:
    membership = _manager(request)
    api_key = selectors.api_key_get(organization=membership.organization, public_id=key_id)
    form = KeyRotateForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose how long the old key stays valid.")
        return _key_back(api_key)
    try:
        new_key, raw_key = services.api_key_rotate(
            api_key=api_key,
            actor=request.user,
            grace_seconds=form.cleaned_data["grace_seconds"],
            source=SOURCE,
        )
    except DomainError as exc:
        messages.error(request, exc.detail)
        return _key_back(api_key)
    api_key.refresh_from_db()
    return _key_shown_once(request, new_key, raw_key, previous=api_key)


def _org_keys_page(
    request: HttpRequest,
    membership: Membership,
    *,
    form: OrgKeyCreateForm | None = None,
    status: int = HTTPStatus.OK,
) -> HttpResponse:
    return render(
        request,
        "agents/org_keys.html",
        {
            "organization": membership.organization,
            "keys": selectors.org_key_list(organization=membership.organization),
            "form": form or OrgKeyCreateForm(),
            "rotate_form": KeyRotateForm(),
            "can_manage": _can_manage(membership),
        },
        status=status,
    )


@login_required
@require_http_methods(["GET", "POST"])
def org_keys(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _org_keys_page(request, _member(request))
    membership = _manager(request)
    form = OrgKeyCreateForm(request.POST)
    if not form.is_valid():
        return _org_keys_page(request, membership, form=form, status=HTTPStatus.BAD_REQUEST)
    try:
        api_key, raw_key = services.api_key_create(
            organization=membership.organization,
            kind=form.cleaned_data["kind"],
            name=form.cleaned_data["name"],
            actor=request.user,
            source=SOURCE,
        )
    except DomainError as exc:
        form.add_error(exc.field if exc.field in form.fields else None, exc.detail)
        return _org_keys_page(request, membership, form=form, status=exc.status)
    return _key_shown_once(request, api_key, raw_key)


# --- Simulation -----------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def simulate(request: HttpRequest, agent_id: str) -> HttpResponse:
    """Reading only (members may use it): the simulate service records nothing."""
    membership = _member(request)
    agent = _agent(membership, agent_id)
    form = SimulateForm(request.POST if request.method == "POST" else None)
    result = None
    status = HTTPStatus.OK
    if form.is_bound:
        status = HTTPStatus.BAD_REQUEST
        if form.is_valid():
            try:
                result = services.agent_simulate(agent=agent, **form.cleaned_data)
                status = HTTPStatus.OK
            except DomainError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.detail)
                status = exc.status
    return render(
        request,
        "agents/simulate.html",
        {"agent": agent, "form": form, "result": result},
        status=status,
    )


# --- One tool call ---------------------------------------------------------------------------


# --- Audit log ------------------------------------------------------------------------------


@login_required
@require_GET
def audit(request: HttpRequest) -> HttpResponse:
    membership = _member(request)
    organization = membership.organization
    agents = list(selectors.agent_list(organization=organization))
    form = AuditFilterForm(request.GET or None, agents=agents)
    entries = audit_entry_list(organization=organization, filters=form.filters())
    page = Paginator(entries, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    export_base = reverse("api-audit-export")
    export_query = form.export_query()
    return render(
        request,
        "agents/audit.html",
        {
            "form": form,
            "page": page,
            "query": query.urlencode(),
            "csv_url": f"{export_base}?{urlencode({'format': 'csv', **export_query})}",
            "jsonl_url": f"{export_base}?{urlencode({'format': 'jsonl', **export_query})}",
        },
    )


@login_required
@require_GET
def action(request: HttpRequest, action_id: str) -> HttpResponse:
    """One tool call as ``GET /api/v1/actions/{id}`` shows it: the check, why it was decided
    so, the shadow rules that applied, its approval and its outcome."""
    membership = _member(request)
    entry = check_entry_get(organization=membership.organization, action_id=action_id)
    detail = action_detail(entry=entry)
    return render(
        request,
        "agents/action.html",
        {
            "entry": entry,
            "action": detail,
            "arguments": arguments_rows(detail["arguments"]),
            "explanation": detail["explanation"],
            "trace_json": json.dumps(detail["explanation"]["trace"], indent=2, ensure_ascii=False),
        },
    )
