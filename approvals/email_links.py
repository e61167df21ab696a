"""One-click links in approval emails: signed, one per reviewer and request, single-use.

An email to a reviewer carries, for each request it lists, an Approve and a Reject link
(``/approvals/email/approve/<token>/``, ``.../reject/<token>/``). Both carry the same token:
``django.core.signing`` over the action id and a random nonce, with its own salt (a token
made for anything else does not load here). The ``EmailLink`` row the nonce names (stored as
its SHA-256) binds the link to that request and that reviewer, and records its one use.

Opening a link decides nothing: it shows a confirmation page (a mail scanner that follows
links changes nothing); the page's POST decides, through ``approval_decide`` as the
reviewer, so their role and the request's routing are checked at use, not at sending.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.urls import reverse

from accounts.models import User
from approvals.models import ApprovalRequest, EmailLink
from wardenproject.errors import NotFound
from wardenproject.ids import random_token

SALT = "warden.approvals.email-link"
# A link never outlives this, whatever its request's deadline (it expires with the request
# before that in practice).
MAX_AGE_SECONDS = 31 * 24 * 3600
CHOICES = ("approve", "reject")


class LinkInvalid(NotFound):
    """A link that is not one of ours: tampered, truncated, too old, or of nothing we know."""

    code = "link_invalid"


@dataclass(frozen=True)
class LinkUrls:
    approve: str
    reject: str


def _hash(nonce: str) -> str:
    return hashlib.sha256(nonce.encode()).hexdigest()


def link_urls(token: str) -> LinkUrls:
    base = settings.WARDEN_BASE_URL
    return LinkUrls(
        approve=base + reverse("approvals:email-link", args=["approve", token]),
        reject=base + reverse("approvals:email-link", args=["reject", token]),
    )


def email_links_create(
    pairs: Iterable[tuple[User, ApprovalRequest]],
) -> dict[tuple[int, int], LinkUrls]:
    """A new link for each (reviewer, request): {(user id, request id): its URLs}."""
    rows: list[EmailLink] = []
    urls: dict[tuple[int, int], LinkUrls] = {}
    for user, request in pairs:
        nonce = random_token(24)
        token = signing.dumps({"a": request.action_id, "n": nonce}, salt=SALT, compress=True)
        rows.append(EmailLink(request=request, user=user, nonce_hash=_hash(nonce)))
        urls[(user.pk, request.pk)] = link_urls(token)
    EmailLink.objects.bulk_create(rows)
    return urls


def email_link_get(token: str) -> EmailLink:
    """The link a token names, with its request and reviewer; ``LinkInvalid`` otherwise."""
    try:
        payload = signing.loads(token, salt=SALT, max_age=MAX_AGE_SECONDS)
    except signing.BadSignature:  # includes SignatureExpired
        raise LinkInvalid(
            "This link is not valid: it was changed, cut short or is too old."
        ) from None
    if not isinstance(payload, dict) or not isinstance(payload.get("n"), str):
        raise LinkInvalid("This link is not valid.")
    link = (
        EmailLink.objects.select_related(
            "user", "request__organization__plan", "request__agent", "request__check_entry"
        )
        .filter(nonce_hash=_hash(payload["n"]))
        .first()
    )
    if link is None or link.request.action_id != payload.get("a"):
        raise LinkInvalid("This link is not valid.")
    return link
