"""Endpoint secrets move from the retired enc1 scheme (or clear text) to Fernet.

Each value is read with SECRET_KEY or one of SECRET_KEY_FALLBACKS and written again under
SECRET_KEY (webhooks/crypto.py). A value no key can read is left as it was and named in the
output: deliveries of that endpoint keep failing with "Cannot sign" until its secret is
rotated or the old key is put back in SECRET_KEY_FALLBACKS and `warden_webhook reencrypt`
is run. The reverse writes enc1 values under SECRET_KEY, which the previous code reads.
"""

from django.conf import settings
from django.db import migrations

FIELDS = ("secret", "previous_secret")


def to_fernet(apps, schema_editor):
    from webhooks.crypto import SecretUnreadable, secret_reencrypt

    Endpoint = apps.get_model("webhooks", "Endpoint")
    unreadable = []
    for endpoint in list(Endpoint.objects.only("pk", "public_id", *FIELDS)):
        changed = []
        for field in FIELDS:
            stored = getattr(endpoint, field)
            if not stored or stored.startswith("fernet:"):
                continue
            try:
                setattr(endpoint, field, secret_reencrypt(stored))
            except SecretUnreadable:
                unreadable.append(f"{endpoint.public_id}.{field}")
                continue
            changed.append(field)
        if changed:
            endpoint.save(update_fields=changed)
    if unreadable:
        print(
            "\n  webhooks: these endpoint secrets cannot be read with SECRET_KEY or "
            f"SECRET_KEY_FALLBACKS and were left as they were: {', '.join(unreadable)}"
        )


def to_enc1(apps, schema_editor):
    from webhooks.crypto import SecretUnreadable, secret_decrypt
    from webhooks.crypto_legacy import legacy_encrypt

    Endpoint = apps.get_model("webhooks", "Endpoint")
    for endpoint in list(Endpoint.objects.only("pk", *FIELDS)):
        changed = []
        for field in FIELDS:
            stored = getattr(endpoint, field)
            if not stored.startswith("fernet:"):
                continue
            try:
                plaintext = secret_decrypt(stored)
            except SecretUnreadable:
                continue
            setattr(endpoint, field, legacy_encrypt(plaintext, secret_key=settings.SECRET_KEY))
            changed.append(field)
        if changed:
            endpoint.save(update_fields=changed)


class Migration(migrations.Migration):
    dependencies = [
        ("webhooks", "0004_arden_endpoints_decision_events_only"),
    ]

    operations = [
        migrations.RunPython(to_fernet, to_enc1, elidable=True),
    ]
