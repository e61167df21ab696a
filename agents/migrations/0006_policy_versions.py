"""Policy versions: every change of an agent's policy is a numbered version, and each existing
agent starts with version 1, its policy as it is now (written as GET .../policy writes it)."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

from agents.policy_document import (
    PolicyDocumentError,
    document_text,
    rule_spec_from_mapping,
    rule_to_mapping,
)


def _rule_mapping(document, lists):
    """A stored rule as its document writes it (PostgreSQL keeps JSON keys in its own order;
    the validator puts them back). One that no longer validates is kept as stored."""
    try:
        return rule_to_mapping(rule_spec_from_mapping(document, lists=lists))
    except PolicyDocumentError:
        return document


def first_versions(apps, schema_editor):
    Agent = apps.get_model("agents", "Agent")
    Rule = apps.get_model("agents", "Rule")
    PolicyVersion = apps.get_model("agents", "PolicyVersion")
    organization_rules = {}
    for agent in Agent.objects.all().order_by("pk").iterator():
        if agent.organization_id not in organization_rules:
            rules = Rule.objects.filter(
                organization_id=agent.organization_id, agent__isnull=True
            ).order_by("position", "id")
            organization_rules[agent.organization_id] = document_text(
                [_rule_mapping(rule.document, None) for rule in rules], "json"
            )
        lists = {
            name: tuple(items)
            for name, items in (agent.policy_lists or {}).items()
            if isinstance(items, list)
        }
        document = {"agent": agent.name, "default": str(agent.default_decision)}
        if agent.policy_lists:
            document["lists"] = agent.policy_lists
        own = Rule.objects.filter(agent_id=agent.pk).order_by("position", "id")
        document["rules"] = [_rule_mapping(rule.document, lists) for rule in own]
        count = len(document["rules"])
        PolicyVersion.objects.create(
            agent_id=agent.pk,
            number=1,
            document_json=document_text(document, "json"),
            organization_rules_json=organization_rules[agent.organization_id],
            actor_label="system",
            source="migration",
            summary=f"first version: {count} rule{'s' if count != 1 else ''}, "
            f"default {document['default']}",
        )


class Migration(migrations.Migration):

    dependencies = [
        ('agents', '0005_rule_counters_pending'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='PolicyVersion',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('number', models.PositiveIntegerField()),
                ('document_json', models.TextField(help_text="The agent's policy document (JSON).")),
                ('organization_rules_json', models.TextField(default='[]', help_text='The organisation-wide rules in force with it (JSON list).')),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('actor_label', models.CharField(blank=True, max_length=200)),
                ('source', models.CharField(blank=True, help_text='api, web, admin, command…', max_length=24)),
                ('note', models.TextField(blank=True)),
                ('summary', models.TextField(blank=True, help_text='What changed since the previous version.')),
                ('restored_from', models.PositiveIntegerField(blank=True, null=True)),
                ('actor_user', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('agent', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='policy_versions', to='agents.agent')),
            ],
            options={
                'ordering': ['agent', '-number'],
                'constraints': [models.UniqueConstraint(fields=('agent', 'number'), name='policy_version_unique_number')],
            },
        ),
        migrations.RunPython(first_versions, migrations.RunPython.noop),
    ]
