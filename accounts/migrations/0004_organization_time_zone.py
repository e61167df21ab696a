from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("accounts", "0003_site_name")]

    operations = [
        migrations.AddField(
            model_name="organization",
            name="time_zone",
            field=models.CharField(
                default="UTC",
                help_text="IANA time zone (Europe/Paris) in which rules read $time.hour and "
                "$time.weekday.",
                max_length=64,
            ),
        ),
    ]
