"""Arden-format endpoints keep only their decision events.

ardenpy's handle_webhook treats every event but an approval as a denial, so Warden no longer
lets an Arden endpoint subscribe to anything but decisions (webhooks/formats.py) and never
sends it anything else. Endpoints saved before keep their decisions and lose the rest, so
what the API shows is what they receive; one left with no event is disabled, with a reason
its owners see. Each change is an audit entry by the system.

Written against the models as they are here, so it stands alone: the format names and the
decision event types are repeated, not imported.
"""

from __future__ import annotations

from django.db import migrations

DECISIONS = ("approval.approved", "approval.rejected", "approval.expired")
DISABLED_REASON = (
    "Arden-format endpoints carry decision events only, and this one was subscribed to none. "
    "Choose decision events and enable it again."
)


def _state(endpoint) -> dict:
    return {
        "events": list(endpoint.events),
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason,
    }


def arden_decision_events_only(apps, schema_editor) -> None:
    Endpoint = apps.get_model("webhooks", "Endpoint")
    AuditEntry = apps.get_model("audit", "AuditEntry")
    for endpoint in Endpoint.objects.filter(format="arden").order_by("pk"):
        kept = [e for e in endpoint.events if e in DECISIONS]
        if kept == list(endpoint.events):
            continue
        removed = [e for e in endpoint.events if e not in DECISIONS]
        before = _state(endpoint)
        endpoint.events = kept
        reason = f"Arden-format endpoints carry decision events only: removed {', '.join(removed)}"
        if not kept and endpoint.enabled:
            endpoint.enabled = False
            endpoint.disabled_reason = DISABLED_REASON
            reason += "; no event was left, so the endpoint was disabled"
        endpoint.save(update_fields=["events", "enabled", "disabled_reason", "updated_at"])
        AuditEntry.objects.create(
            organization_id=endpoint.organization_id,
            kind="config",
            actor_label="system",
            target_type="endpoint",
            target_id=endpoint.public_id,
            reason=f"{reason} ({endpoint.url}).",
            source="migration",
            data={"verb": "updated", "before": before, "after": _state(endpoint)},
        )


class Migration(migrations.Migration):
    dependencies = [
        ("webhooks", "0003_delivery_due_index"),
        ("audit", "0006_unenforced_agent_and_key"),
    ]

    # Not reversible in substance: the removed subscriptions are in the audit entries.
    operations = [migrations.RunPython(arden_decision_events_only, migrations.RunPython.noop)]
