"""Approver keys now vote as the member who created them (approvals.services).

Keys that belong to no active member of their organisation (made without a creator, e.g. by
an older ``warden_bootstrap``, or whose creator left, was deleted or deactivated) would vote
as nobody: they are refused at authentication, and revoked here so the key pages say so.
Each revocation gets a configuration entry in the audit log, as ``api_key_revoke`` writes.
"""

from django.db import migrations
from django.db.models import Exists, OuterRef
from django.utils import timezone


def revoke_memberless_approver_keys(apps, schema_editor):
    ApiKey = apps.get_model("agents", "ApiKey")
    Membership = apps.get_model("accounts", "Membership")
    AuditEntry = apps.get_model("audit", "AuditEntry")
    member = Membership.objects.filter(
        organization_id=OuterRef("organization_id"),
        user_id=OuterRef("created_by_id"),
        user__is_active=True,
    )
    now = timezone.now()
    orphans = ApiKey.objects.filter(kind="approver", revoked_at__isnull=True).exclude(
        Exists(member)
    )
    for key in orphans.iterator():
        key.revoked_at = now
        key.save(update_fields=["revoked_at"])
        AuditEntry.objects.create(
            organization_id=key.organization_id,
            kind="config",
            actor_label="system",
            target_type="apikey",
            target_id=key.public_id,
            reason=f"revoked API key {key.name} ({key.prefix}…): it belongs to no member",
            source="migration",
            data={
                "verb": "revoked",
                "before": {"revoked_at": None},
                "after": {"revoked_at": now.isoformat()},
            },
        )


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0003_rule_document_limit_counters"),
        ("accounts", "0004_organization_time_zone"),
        ("audit", "0006_unenforced_agent_and_key"),
    ]

    operations = [
        migrations.RunPython(revoke_memberless_approver_keys, migrations.RunPython.noop)
    ]
