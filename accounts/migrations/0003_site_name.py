from urllib.parse import urlsplit

from django.conf import settings
from django.db import migrations


def name_site(apps, schema_editor):
    # allauth's emails say "Hello from {site name}"; make that Warden, not example.com.
    Site = apps.get_model("sites", "Site")
    domain = urlsplit(settings.WARDEN_BASE_URL).netloc or "localhost"
    Site.objects.update_or_create(
        pk=settings.SITE_ID, defaults={"domain": domain[:100], "name": "Warden"}
    )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_seed_plans"),
        ("sites", "0002_alter_domain_unique"),
    ]

    operations = [migrations.RunPython(name_site, migrations.RunPython.noop)]
