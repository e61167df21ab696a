from __future__ import annotations

from decimal import Decimal

from django.db import migrations

# model, USD per million prompt tokens, USD per million completion tokens (list prices;
# editable in the admin).
PRICES = [
    ("gpt-4o", "2.50", "10.00"),
    ("gpt-4o-mini", "0.15", "0.60"),
    ("gpt-4.1", "2.00", "8.00"),
    ("gpt-4.1-mini", "0.40", "1.60"),
    ("o3-mini", "1.10", "4.40"),
    ("claude-3-5-sonnet", "3.00", "15.00"),
    ("claude-3-5-haiku", "0.80", "4.00"),
    ("claude-sonnet-4", "3.00", "15.00"),
    ("gemini-1.5-pro", "1.25", "5.00"),
    ("gemini-1.5-flash", "0.075", "0.30"),
]


def seed_prices(apps, schema_editor):
    ModelPrice = apps.get_model("agents", "ModelPrice")
    for model, prompt, completion in PRICES:
        ModelPrice.objects.get_or_create(
            model=model,
            defaults={
                "prompt_usd_per_million": Decimal(prompt),
                "completion_usd_per_million": Decimal(completion),
            },
        )


class Migration(migrations.Migration):
    dependencies = [("agents", "0001_initial")]

    operations = [migrations.RunPython(seed_prices, migrations.RunPython.noop)]
