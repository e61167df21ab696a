"""Email about webhook endpoints: sent from the mail queue, never by a delivering worker."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import send_mail

from accounts.models import Membership
from accounts.permissions import Capability, roles_with
from webhooks.models import Endpoint


def endpoint_disabled_notify(*, endpoint_pk: int) -> int:
    """Tell the organisation's webhook managers that Warden disabled this endpoint."""
    endpoint = Endpoint.objects.filter(pk=endpoint_pk).first()
    if endpoint is None or endpoint.enabled:
        return 0
    emails = list(
        Membership.objects.filter(
            organization_id=endpoint.organization_id,
            role__in=roles_with(Capability.MANAGE_WEBHOOKS),
        ).values_list("user__email", flat=True)
    )
    if not emails:
        return 0
    link = f"{settings.WARDEN_BASE_URL}/webhooks/{endpoint.public_id}/"
    failing = (
        f"have failed continuously since {endpoint.failing_since:%Y-%m-%d %H:%M} UTC"
        if endpoint.failing_since
        else "failed"
    )
    return send_mail(
        subject=f"Warden disabled your webhook endpoint {endpoint.url}",
        message=(
            f"Deliveries to {endpoint.url} {failing}, so Warden disabled the endpoint.\n"
            f"Reason: {endpoint.disabled_reason}\n\n"
            f"Fix the receiver, enable the endpoint again and recover the failed deliveries:\n"
            f"{link}\n"
        ),
        from_email=None,
        recipient_list=emails,
        fail_silently=True,
    )
