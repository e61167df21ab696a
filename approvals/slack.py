"""Slack approvals: connecting a workspace, posting held calls, editing the message when the
request is decided, and deciding from Slack's buttons.

- Connecting (``slack_connect``): an owner or admin enters the bot token and signing secret
  (stored encrypted, webhooks/crypto.py) and a default channel; ``auth.test`` on the token
  gives the workspace (team) id, which maps Slack's requests to the organisation.
- Posting (``slack_message_post``, task ``approvals.slack_post`` on the ``slack`` queue,
  queued after the check commits): to the rule's ``slack_channel``, else the agent's channel,
  else the organisation's default. Arguments at the rule's ``redact`` paths are hidden.
- Editing (``slack_message_update``, task ``approvals.slack_update``): a decision made
  anywhere, an expiry or a cancellation queues it (approvals/slack_hooks.py).
- Deciding (``slack_interaction_handle``, ``POST /integrations/slack/interactions``): the
  request must carry a valid Slack signature made with the signing secret of the workspace it
  names; the Slack user must be mapped to a member (``SlackUserLink``: a one-time link, or the
  same verified email); the decision goes through ``approval_decide`` like every other, so the
  member's role (and the rule's approvers) apply exactly as on the dashboard. A refusal is an
  ephemeral message and changes nothing.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from allauth.account.models import EmailAddress
from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone
from slack_sdk.signature import SignatureVerifier

from accounts.models import Membership, Organization, User
from accounts.permissions import Capability, membership_require
from agents.models import Agent
from agents.policy_document import _SLACK_CHANNEL_RE
from approvals import slack_blocks
from approvals.grants import grant_kinds_allowed
from approvals.models import ApprovalRequest
from approvals.services import approval_decide, approval_decider_problem
from approvals.slack_api import SlackPermanentError, SlackRetryLater, slack_call, slack_client
from approvals.slack_hooks import POST_TASK, UPDATE_TASK, slack_task_queue
from approvals.slack_models import SlackAgentChannel, SlackConnection, SlackMessage, SlackUserLink
from audit.services import audit_record_change, model_snapshot
from wardenproject.errors import DomainError, NotFound, ValidationFailed
from wardenproject.strictjson import json_parse
from webhooks.crypto import SecretUnreadable, secret_decrypt, secret_encrypt

logger = logging.getLogger(__name__)

LINK_SALT = "warden.slack.user-link"
LINK_MAX_AGE_SECONDS = 30 * 60
MAX_INTERACTION_BYTES = 64 * 1024
SWEEP_AFTER = timedelta(minutes=2)
POST_LEASE = timedelta(seconds=60)  # longer than a post takes (SLACK_TIMEOUT_SECONDS)
# What a connection's audit entries show (never the token or the signing secret).
CONNECTION_FIELDS = ["team_id", "team_name", "bot_user_id", "default_channel"]


def _channel_clean(channel: str, *, field_name: str) -> str:
    channel = (channel or "").strip()
    if not _SLACK_CHANNEL_RE.fullmatch(channel):
        raise ValidationFailed(
            "Name a Slack channel such as #approvals, or a channel id (C0123ABCD).",
            field=field_name,
        )
    return channel


class SlackSignatureInvalid(DomainError):
    status = HTTPStatus.UNAUTHORIZED
    code = "bad_signature"


# --- connecting --------------------------------------------------------------------------------


def slack_connection_get(*, organization: Organization) -> SlackConnection | None:
    return SlackConnection.objects.filter(organization=organization).first()


def slack_connect(
    *,
    actor: User,
    organization: Organization,
    bot_token: str,
    signing_secret: str,
    default_channel: str,
    source: str = "web",
) -> SlackConnection:
    """Connect (or reconfigure) the organisation's Slack app. An empty token or secret keeps
    the stored one when the organisation is already connected."""
    membership_require(user=actor, organization=organization, capability=Capability.MANAGE_WEBHOOKS)
    existing = slack_connection_get(organization=organization)
    default_channel = _channel_clean(default_channel, field_name="default_channel")
    bot_token = (bot_token or "").strip()
    signing_secret = (signing_secret or "").strip()
    if existing is None and not bot_token:
        raise ValidationFailed("Enter the app's bot token (xoxb-...).", field="bot_token")
    if existing is None and not signing_secret:
        raise ValidationFailed("Enter the app's signing secret.", field="signing_secret")
    if bot_token and (not bot_token.startswith("xoxb-") or len(bot_token) > 300):
        raise ValidationFailed("A bot token starts with xoxb-.", field="bot_token")
    if signing_secret and (len(signing_secret) > 200 or not signing_secret.isalnum()):
        raise ValidationFailed(
            "A signing secret is letters and digits (Basic Information, App Credentials).",
            field="signing_secret",
        )
    try:
        token = bot_token or secret_decrypt(existing.bot_token)  # type: ignore[union-attr]
    except SecretUnreadable:
        raise ValidationFailed(
            "The stored bot token cannot be read (SECRET_KEY changed); enter it again.",
            field="bot_token",
        ) from None
    try:
        identity = slack_call(slack_client(token), "auth_test")
    except SlackPermanentError as exc:
        raise ValidationFailed(
            f"Slack refused this bot token ({exc.error}).", field="bot_token"
        ) from None
    except SlackRetryLater as exc:
        raise ValidationFailed(
            f"Slack could not be reached to check the token ({exc.error}); try again.",
            field="bot_token",
        ) from None
    team_id = str(identity.get("team_id") or "")[:32]
    if not team_id:
        raise ValidationFailed(
            "Slack did not say which workspace this token is for.", field="bot_token"
        )
    with transaction.atomic():
        connection = (
            SlackConnection.objects.select_for_update().filter(organization=organization).first()
        )
        before = model_snapshot(connection, CONNECTION_FIELDS) if connection else None
        if connection is None:
            connection = SlackConnection(organization=organization)
        connection.team_id = team_id
        connection.team_name = str(identity.get("team") or "")[:200]
        connection.bot_user_id = str(identity.get("user_id") or "")[:32]
        connection.default_channel = default_channel
        if bot_token:
            connection.bot_token = secret_encrypt(bot_token)
        if signing_secret:
            connection.signing_secret = secret_encrypt(signing_secret)
        connection.connected_by = actor
        connection.connected_at = timezone.now()
        try:
            with transaction.atomic():
                connection.save()
        except IntegrityError:
            raise ValidationFailed(
                "This Slack workspace is already connected to another organisation.",
                field="bot_token",
            ) from None
        audit_record_change(
            organization=organization,
            actor_user=actor,
            target=connection,
            verb="connect" if before is None else "update",
            before=before,
            after={
                **model_snapshot(connection, CONNECTION_FIELDS),
                "bot_token_changed": bool(bot_token),
                "signing_secret_changed": bool(signing_secret),
            },
            source=source,
        )
    return connection


def slack_disconnect(*, actor: User, organization: Organization, source: str = "web") -> bool:
    """Forget the app's secrets; posted messages stay as they are. False if not connected."""
    membership_require(user=actor, organization=organization, capability=Capability.MANAGE_WEBHOOKS)
    with transaction.atomic():
        connection = (
            SlackConnection.objects.select_for_update().filter(organization=organization).first()
        )
        if connection is None:
            return False
        before = model_snapshot(connection, CONNECTION_FIELDS)
        audit_record_change(
            organization=organization,
            actor_user=actor,
            target=connection,
            verb="disconnect",
            before=before,
            after=None,
            source=source,
        )
        connection.delete()
    return True


def slack_agent_channel_set(
    *, actor: User, agent: Agent, channel: str, source: str = "web"
) -> SlackAgentChannel | None:
    """The agent's channel (empty: back to the organisation's default)."""
    membership_require(
        user=actor, organization=agent.organization, capability=Capability.MANAGE_AGENTS
    )
    channel = (channel or "").strip()
    if channel:
        channel = _channel_clean(channel, field_name="slack_channel")
    with transaction.atomic():
        current = SlackAgentChannel.objects.select_for_update().filter(agent=agent).first()
        before = {"slack_channel": current.channel if current else ""}
        if channel:
            current = current or SlackAgentChannel(agent=agent)
            current.channel = channel
            current.save()
        elif current is not None:
            current.delete()
            current = None
        audit_record_change(
            organization=agent.organization,
            actor_user=actor,
            target=agent,
            verb="set Slack channel of",
            before=before,
            after={"slack_channel": channel},
            source=source,
        )
    return current


def slack_agent_channel_get(*, agent: Agent) -> str:
    setting = SlackAgentChannel.objects.filter(agent=agent).first()
    return setting.channel if setting else ""


# --- posting and editing -----------------------------------------------------------------------


def slack_route(request: ApprovalRequest, connection: SlackConnection) -> tuple[str, list[str]]:
    """The channel of ``request``'s message (the rule's, the agent's, the organisation's) and
    the argument paths to hide (the rule's ``redact``)."""
    approval = {}
    if request.rule is not None:
        approval = (request.rule.document or {}).get("approval") or {}
    channel = approval.get("slack_channel") or ""
    if not channel:
        channel = slack_agent_channel_get(agent=request.agent)
    return channel or connection.default_channel, list(approval.get("redact") or [])


def _view(request: ApprovalRequest) -> slack_blocks.MessageView:
    return slack_blocks.MessageView(
        action_id=request.action_id,
        action=request.action,
        agent_name=request.agent.name,
        environment=request.environment,
        arguments=request.arguments,
        rule_name=request.rule_name,
        reason=request.reason,
        expires_at=request.expires_at,
        status=request.status,
        decided_by=request.decided_by_label,
        decided_at=request.decided_at,
        notes=request.notes,
        detail_url=settings.WARDEN_BASE_URL + reverse("approvals:detail", args=[request.action_id]),
        approvers=", ".join(request.approvers),
        escalated=request.escalations > 0,
        grant_kinds=grant_kinds_allowed(request),
    )


def _client_for(connection: SlackConnection) -> Any:
    try:
        return slack_client(secret_decrypt(connection.bot_token))
    except SecretUnreadable as exc:
        raise SlackPermanentError("token_unreadable") from exc


def _message_fail(message: SlackMessage, error: str) -> None:
    SlackMessage.objects.filter(pk=message.pk).update(
        state=SlackMessage.State.FAILED, error=error[:200], updated_at=timezone.now()
    )
    logger.warning("Slack message of approval request %s failed: %s", message.request_id, error)


def slack_message_post(*, request_id: int) -> SlackMessage | None:
    """Post the request's message once (a redelivered task finds it posted). Raises
    ``SlackRetryLater`` when Slack asks to try later; a permanent error marks it failed."""
    request = ApprovalRequest.objects.select_related("agent", "rule").filter(pk=request_id).first()
    if request is None:
        return None
    connection = SlackConnection.objects.filter(organization_id=request.organization_id).first()
    if connection is None:
        return None
    channel, redact = slack_route(request, connection)
    message, _ = SlackMessage.objects.get_or_create(
        request=request,
        defaults={"organization_id": request.organization_id, "channel": channel, "redact": redact},
    )
    now = timezone.now()
    claimed = (
        SlackMessage.objects.filter(pk=message.pk, state=SlackMessage.State.POSTING)
        .filter(Q(leased_until__isnull=True) | Q(leased_until__lte=now))
        .update(leased_until=now + POST_LEASE)
    )
    if not claimed:  # posted, failed, or another task is posting it now
        return message
    view = _view(request)
    try:
        answer = slack_call(
            _client_for(connection),
            "chat_postMessage",
            channel=message.channel,
            text=slack_blocks.message_text(view),
            blocks=slack_blocks.message_blocks(view, message.redact),
            unfurl_links=False,
            unfurl_media=False,
        )
    except SlackPermanentError as exc:
        _message_fail(message, exc.error)
        return message
    except SlackRetryLater:
        SlackMessage.objects.filter(pk=message.pk).update(leased_until=None)  # for the retry
        raise
    SlackMessage.objects.filter(pk=message.pk).update(
        leased_until=None,
        state=SlackMessage.State.POSTED,
        ts=str(answer.get("ts") or "")[:32],
        channel_id=str(answer.get("channel") or "")[:32],
        shown_status=view.status,
        updated_at=timezone.now(),
    )
    message.refresh_from_db()
    # Decided while it was being posted: its decision's update found no message to edit.
    if ApprovalRequest.objects.filter(pk=request_id).exclude(status=view.status).exists():
        slack_message_update(request_id=request_id)
        message.refresh_from_db()
    return message


def slack_message_update(*, request_id: int) -> SlackMessage | None:
    """Edit the request's message to show its current status (``chat.update``)."""
    message = (
        SlackMessage.objects.select_related("request__agent")
        .filter(request_id=request_id, state=SlackMessage.State.POSTED)
        .first()
    )
    if message is None or not message.ts:
        return message
    connection = SlackConnection.objects.filter(organization_id=message.organization_id).first()
    if connection is None:
        return message
    view = _view(message.request)
    try:
        slack_call(
            _client_for(connection),
            "chat_update",
            channel=message.channel_id or message.channel,
            ts=message.ts,
            text=slack_blocks.message_text(view),
            blocks=slack_blocks.message_blocks(view, message.redact),
        )
    except SlackPermanentError as exc:
        # Failed: the sweep stops trying (the message was deleted, the bot left the channel).
        SlackMessage.objects.filter(pk=message.pk).update(
            state=SlackMessage.State.FAILED, error=exc.error[:200], updated_at=timezone.now()
        )
        logger.warning("Slack message of approval request %s not edited: %s", request_id, exc.error)
        return message
    SlackMessage.objects.filter(pk=message.pk).update(
        shown_status=view.status, updated_at=timezone.now()
    )
    message.refresh_from_db()
    return message


def slack_message_give_up(*, request_id: int, error: str) -> None:
    """The task ran out of retries: say so on the row (the dashboard still has the request)."""
    message = SlackMessage.objects.filter(request_id=request_id).first()
    if message is not None and message.state == SlackMessage.State.POSTING:
        _message_fail(message, f"gave up: {error}")


@dataclass(frozen=True)
class SweepResult:
    posts: list[int]  # request ids whose post task was queued again
    updates: list[int]  # request ids whose update task was queued again


def slack_sweep(*, now: datetime | None = None, batch: int = 100) -> SweepResult:
    """Queue again the Slack work whose task was lost (a broker outage, a lost message): held
    calls of connected organisations with no message ``SWEEP_AFTER`` after they arrived
    (only those held since the organisation connected), and posted messages that still show
    an older status ``SWEEP_AFTER`` after their last edit."""
    now = now or timezone.now()
    posts = list(
        ApprovalRequest.objects.filter(
            status=ApprovalRequest.Status.PENDING,
            requested_at__lt=now - SWEEP_AFTER,
            expires_at__gt=now,
            organization__slack_connection__isnull=False,
            requested_at__gte=F("organization__slack_connection__connected_at"),
            slack_message__isnull=True,
        )
        .order_by("requested_at")
        .values_list("pk", flat=True)[:batch]
    )
    updates = list(
        SlackMessage.objects.filter(
            state=SlackMessage.State.POSTED,
            updated_at__lt=now - SWEEP_AFTER,
        )
        .exclude(shown_status=F("request__status"))
        .order_by("updated_at")
        .values_list("request_id", flat=True)[:batch]
    )
    for request_id in posts:
        slack_task_queue(POST_TASK, request_id)
    for request_id in updates:
        slack_task_queue(UPDATE_TASK, request_id)
    return SweepResult(posts=posts, updates=updates)


# --- mapping Slack users to members ------------------------------------------------------------


def slack_link_token(*, organization: Organization, team_id: str, slack_user_id: str) -> str:
    payload = {
        "o": organization.public_id,
        "t": team_id,
        "u": slack_user_id,
        "n": secrets.token_urlsafe(8),
    }
    return signing.dumps(payload, salt=LINK_SALT, compress=True)


def slack_link_url(token: str) -> str:
    return settings.WARDEN_BASE_URL + reverse("slack:link", args=[token])


@dataclass(frozen=True)
class LinkOffer:
    organization: Organization
    team_id: str
    slack_user_id: str
    team_name: str


def slack_link_read(*, user: User, token: str) -> LinkOffer:
    """The link a token offers to ``user``: NotFound when it is bad, expired, not for one of
    the user's organisations, or for a workspace that is no longer connected."""
    try:
        payload = signing.loads(token, salt=LINK_SALT, max_age=LINK_MAX_AGE_SECONDS)
    except signing.BadSignature:
        raise NotFound("This Slack link is invalid or has expired; click in Slack again.") from None
    membership = (
        Membership.objects.select_related("organization")
        .filter(user=user, organization__public_id=payload.get("o"))
        .first()
    )
    connection = (
        SlackConnection.objects.filter(
            organization=membership.organization, team_id=payload.get("t")
        ).first()
        if membership
        else None
    )
    if membership is None or connection is None:
        raise NotFound("This Slack link is not for one of your organisations.")
    return LinkOffer(
        organization=membership.organization,
        team_id=connection.team_id,
        slack_user_id=str(payload.get("u"))[:32],
        team_name=connection.team_name,
    )


def _link_create(
    *, organization: Organization, team_id: str, slack_user_id: str, user: User, via: str
) -> SlackUserLink:
    """One Slack user, one member: a second link for the same Slack user is refused."""
    with transaction.atomic():
        try:
            with transaction.atomic():
                link = SlackUserLink.objects.create(
                    organization=organization,
                    team_id=team_id,
                    slack_user_id=slack_user_id,
                    user=user,
                    via=via,
                )
        except IntegrityError:
            raise ValidationFailed(
                "This Slack account is already linked to a member of the organisation; the "
                "link was used.",
                field="token",
            ) from None
        audit_record_change(
            organization=organization,
            actor_user=user,
            target=link,
            verb="link",
            before=None,
            after={
                "slack_user_id": slack_user_id,
                "team_id": team_id,
                "user": user.email,
                "via": via,
            },
            source="slack",
        )
    return link


def slack_link_confirm(*, user: User, token: str) -> SlackUserLink:
    """The logged-in member confirms that the Slack user of ``token`` is them (single use)."""
    offer = slack_link_read(user=user, token=token)
    return _link_create(
        organization=offer.organization,
        team_id=offer.team_id,
        slack_user_id=offer.slack_user_id,
        user=user,
        via=SlackUserLink.Via.LINK,
    )


def slack_links_for_user(*, user: User) -> list[SlackUserLink]:
    return list(
        SlackUserLink.objects.filter(user=user).select_related("organization").order_by("pk")
    )


def slack_link_remove(*, user: User, link_id: int) -> None:
    """A member unlinks one of their own Slack accounts (anyone else's is 404)."""
    with transaction.atomic():
        link = (
            SlackUserLink.objects.filter(pk=link_id, user=user)
            .select_related("organization")
            .first()
        )
        if link is None:
            raise NotFound("No such Slack link.")
        audit_record_change(
            organization=link.organization,
            actor_user=user,
            target=link,
            verb="unlink",
            before={"slack_user_id": link.slack_user_id, "user": user.email},
            after=None,
            source="web",
        )
        link.delete()


def _member_for(connection: SlackConnection, slack_user_id: str, client: Any) -> User | None:
    """The member a Slack user acts as: their link, else a member whose verified email is the
    Slack profile's (then linked, so it is asked once)."""
    link = (
        SlackUserLink.objects.select_related("user")
        .filter(organization_id=connection.organization_id, slack_user_id=slack_user_id)
        .first()
    )
    if link is not None:
        return link.user if link.user.is_active else None
    try:
        info = slack_call(client, "users_info", user=slack_user_id)
    except (SlackPermanentError, SlackRetryLater):
        return None
    profile = (info.get("user") or {}).get("profile") or {}
    email = str(profile.get("email") or "").strip()
    if not email or (info.get("user") or {}).get("is_bot"):
        return None
    verified = (
        EmailAddress.objects.filter(
            email__iexact=email,
            verified=True,
            user__is_active=True,
            user__memberships__organization_id=connection.organization_id,
        )
        .select_related("user")
        .first()
    )
    if verified is None or verified.user.email.lower() != email.lower():
        return None
    with contextlib.suppress(ValidationFailed):  # a concurrent click linked them first
        _link_create(
            organization=connection.organization,
            team_id=connection.team_id,
            slack_user_id=slack_user_id,
            user=verified.user,
            via=SlackUserLink.Via.EMAIL,
        )
    return verified.user


# --- interactions ------------------------------------------------------------------------------


@dataclass
class SlackReply:
    status: int = 200
    body: dict[str, Any] | None = None
    ephemeral: list[str] = field(default_factory=list)  # texts sent to the clicking user


def _payload_parse(body: bytes) -> dict[str, Any]:
    if len(body) > MAX_INTERACTION_BYTES:
        raise ValidationFailed("The interaction payload is too large.", field="payload")
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=False, max_num_fields=10)
        raw = form["payload"][0]
    except (UnicodeDecodeError, KeyError, IndexError, ValueError):
        raise ValidationFailed(
            "Expected a form-encoded payload= with Slack's JSON.", field="payload"
        ) from None
    try:
        payload = json_parse(raw)
    except ValidationFailed as exc:
        raise ValidationFailed(exc.detail, field="payload") from None
    if not isinstance(payload, dict):
        raise ValidationFailed("The payload must be a JSON object.", field="payload")
    return payload


def _team_id(payload: dict[str, Any]) -> str:
    team = payload.get("team")
    if isinstance(team, dict) and isinstance(team.get("id"), str):
        return team["id"]
    user = payload.get("user")
    if isinstance(user, dict) and isinstance(user.get("team_id"), str):
        return user["team_id"]
    return ""


def _verified_connection(body: bytes, headers: Mapping[str, str]) -> tuple[SlackConnection, dict]:
    payload = _payload_parse(body)
    refusal = SlackSignatureInvalid("The Slack request signature is missing, stale or wrong.")
    team_id = _team_id(payload)
    connection = (
        SlackConnection.objects.select_related("organization").filter(team_id=team_id).first()
        if team_id
        else None
    )
    if connection is None:
        raise refusal
    try:
        verifier = SignatureVerifier(secret_decrypt(connection.signing_secret))
        valid = verifier.is_valid_request(body, dict(headers))
    except (SecretUnreadable, ValueError):
        valid = False
    if not valid:
        raise refusal
    return connection, payload


def _ephemeral(client: Any, payload: dict[str, Any], text: str, reply: SlackReply) -> None:
    reply.ephemeral.append(text)
    channel = (payload.get("channel") or {}).get("id") or (
        (payload.get("container") or {}).get("channel_id")
    )
    user = (payload.get("user") or {}).get("id")
    if not channel or not user:
        return
    try:
        slack_call(client, "chat_postEphemeral", channel=channel, user=user, text=text)
    except (SlackPermanentError, SlackRetryLater) as exc:
        logger.warning("Slack ephemeral message not sent: %s", exc)


def _unmapped_text(connection: SlackConnection, slack_user_id: str) -> str:
    token = slack_link_token(
        organization=connection.organization,
        team_id=connection.team_id,
        slack_user_id=slack_user_id,
    )
    return (
        "Your Slack account is not linked to a member of "
        f"{connection.organization.name} in Warden, so nothing was decided. Open this link "
        f"while logged in to Warden to link it (valid 30 minutes, once): {slack_link_url(token)}"
    )


def _request_in(connection: SlackConnection, action_id: Any) -> ApprovalRequest | None:
    if not isinstance(action_id, str):
        return None
    return ApprovalRequest.objects.filter(
        action_id=action_id, organization_id=connection.organization_id
    ).first()


def slack_interaction_handle(*, body: bytes, headers: Mapping[str, str]) -> SlackReply:
    """One request from Slack's interactivity URL. Raises ``SlackSignatureInvalid`` (401) when
    the signature does not verify with the signing secret of the workspace the payload
    names, ``ValidationFailed`` (400) on a malformed body."""
    connection, payload = _verified_connection(body, headers)
    kind = payload.get("type")
    if kind == "block_actions":
        return _block_action(connection, payload)
    if kind == "view_submission":
        view = payload.get("view") or {}
        if view.get("callback_id") == slack_blocks.REJECT_CALLBACK:
            return _reject_submitted(connection, payload, view)
        if view.get("callback_id") == slack_blocks.REMEMBER_CALLBACK:
            return _remember_submitted(connection, payload, view)
    return SlackReply()


def _block_action(connection: SlackConnection, payload: dict[str, Any]) -> SlackReply:
    reply = SlackReply()
    actions = payload.get("actions") or []
    action = actions[0] if actions and isinstance(actions[0], dict) else {}
    verb = action.get("action_id")
    if verb not in (
        slack_blocks.APPROVE_ACTION,
        slack_blocks.REJECT_ACTION,
        slack_blocks.REMEMBER_ACTION,
    ):
        return reply
    client = _client_for(connection)
    slack_user_id = str((payload.get("user") or {}).get("id") or "")
    request = _request_in(connection, action.get("value"))
    if request is None:
        _ephemeral(client, payload, "No such approval request in this organisation.", reply)
        return reply
    member = _member_for(connection, slack_user_id, client)
    if member is None:
        _ephemeral(client, payload, _unmapped_text(connection, slack_user_id), reply)
        return reply
    if verb == slack_blocks.REJECT_ACTION:
        try:
            slack_call(
                client,
                "views_open",
                trigger_id=str(payload.get("trigger_id") or ""),
                view=slack_blocks.reject_modal(action_id=request.action_id, action=request.action),
            )
        except (SlackPermanentError, SlackRetryLater) as exc:
            _ephemeral(
                client, payload, f"Could not open the rejection form ({exc}); try again.", reply
            )
        return reply
    if verb == slack_blocks.REMEMBER_ACTION:
        return _remember_open(client, payload, request, member, reply)
    try:
        decided = approval_decide(
            request_or_action_id=request, actor_user=member, approve=True, source="slack"
        )
    except DomainError as exc:
        _ephemeral(client, payload, f"Nothing was decided: {exc.detail}", reply)
        return reply
    if decided.status == ApprovalRequest.Status.PENDING:  # a quorum: one vote of several
        _ephemeral(
            client,
            payload,
            f"Your approval is recorded; {decided.approvals_required} people must approve "
            "this request.",
            reply,
        )
    return reply


def _remember_open(
    client: Any,
    payload: dict[str, Any],
    request: ApprovalRequest,
    member: User,
    reply: SlackReply,
) -> SlackReply:
    """ "Approve and remember…": the modal, for a reviewer who may decide the request now
    (others are told why here rather than after filling it in)."""
    problem = approval_decider_problem(request=request, user=member)
    if problem is not None:
        _ephemeral(client, payload, f"Nothing was decided: {problem.detail}", reply)
        return reply
    kinds = grant_kinds_allowed(request)
    if not kinds:
        _ephemeral(
            client,
            payload,
            "Nothing was decided: this request is no longer pending, or its rule allows no "
            "remembered approvals.",
            reply,
        )
        return reply
    try:
        slack_call(
            client,
            "views_open",
            trigger_id=str(payload.get("trigger_id") or ""),
            view=slack_blocks.remember_modal(
                action_id=request.action_id, action=request.action, kinds=kinds
            ),
        )
    except (SlackPermanentError, SlackRetryLater) as exc:
        _ephemeral(client, payload, f"Could not open the form ({exc}); try again.", reply)
    return reply


def _remember_submitted(
    connection: SlackConnection, payload: dict[str, Any], view: dict[str, Any]
) -> SlackReply:
    """The remember modal's submit: approve with the grant (the rule's allowed kinds, the
    member's role and the routing checked by ``approval_decide``)."""
    grant, notes = slack_blocks.remember_values(view.get("state") or {})
    return _modal_decide(
        connection,
        payload,
        view,
        approve=True,
        notes=notes,
        grant=grant,
        blocks=(*slack_blocks.GRANT_BLOCKS, slack_blocks.NOTES_BLOCK),
        button="the button",
    )


def _reject_submitted(
    connection: SlackConnection, payload: dict[str, Any], view: dict[str, Any]
) -> SlackReply:
    values = (view.get("state") or {}).get("values") or {}
    notes = ((values.get(slack_blocks.NOTES_BLOCK) or {}).get(slack_blocks.NOTES_INPUT) or {}).get(
        "value"
    ) or ""
    return _modal_decide(
        connection,
        payload,
        view,
        approve=False,
        notes=str(notes),
        grant=None,
        blocks=(slack_blocks.NOTES_BLOCK,),
        button="Reject",
    )


def _modal_decide(
    connection: SlackConnection,
    payload: dict[str, Any],
    view: dict[str, Any],
    *,
    approve: bool,
    notes: str,
    grant: dict[str, Any] | None,
    blocks: tuple[str, ...],
    button: str,
) -> SlackReply:
    """Decide the request a submitted modal names (``private_metadata``) as the clicking
    member. A refusal is shown in the modal under the block of the field it names (else the
    first block), and nothing is decided."""

    def refuse(text: str, block: str = blocks[0]) -> SlackReply:
        return SlackReply(body={"response_action": "errors", "errors": {block: text[:150]}})

    request = _request_in(connection, view.get("private_metadata"))
    if request is None:
        return refuse("No such approval request in this organisation.")
    slack_user_id = str((payload.get("user") or {}).get("id") or "")
    member = _member_for(connection, slack_user_id, _client_for(connection))
    if member is None:
        return refuse(f"Your Slack account is not linked to a member; click {button} again.")
    try:
        approval_decide(
            request_or_action_id=request,
            actor_user=member,
            approve=approve,
            notes=notes,
            source="slack",
            grant=grant,
        )
    except DomainError as exc:
        name = (exc.field or "").removeprefix("grant.")
        return refuse(f"Nothing was decided: {exc.detail}", name if name in blocks else blocks[0])
    return SlackReply()
