"""`manage.py warden_org set-plan ORG PLAN`: the operator's changes to an organisation.

ORG is the organisation's public id or exact name (a name several organisations share is
refused: give the id). The change goes through ``organization_change_plan`` as the
operator, so it is audited (source ``command``) and works whether or not owners may change
their plan themselves (``WARDEN_SELF_SERVE_PLANS``). ``--actor EMAIL`` names the operator who
ran it (an active staff user); without it the entry names the system.

Extending it: add a sub-parser in ``add_arguments`` and a ``_<name>`` method (dashes become
underscores) that takes the organisation and the options.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Organization, Plan, User
from accounts.services import organization_change_plan
from wardenproject.commands import organization_from
from wardenproject.errors import DomainError


class Command(BaseCommand):
    help = "Operator changes to an organisation: set-plan ORG PLAN."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)
        set_plan = sub.add_parser("set-plan", help="Move an organisation to another plan.")
        set_plan.add_argument("org", help="Organisation public id or name.")
        set_plan.add_argument("plan", help=f"Plan slug: {', '.join(Plan.Slug.values)}.")
        set_plan.add_argument("--json", action="store_true", help="Print one JSON object.")
        set_plan.add_argument(
            "--actor",
            metavar="EMAIL",
            help="Email of the staff user (the operator) on whose behalf this runs: the audit "
            "log names them. Without it the entry names the system.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        organization = organization_from(options["org"])
        try:
            getattr(self, f"_{options['subcommand'].replace('-', '_')}")(organization, options)
        except DomainError as exc:
            raise CommandError(exc.detail) from None

    def _set_plan(self, organization: Organization, options: dict[str, Any]) -> None:
        plan = Plan.objects.filter(slug=options["plan"]).first()
        if plan is None:
            slugs = ", ".join(Plan.objects.values_list("slug", flat=True))
            raise CommandError(f"No plan {options['plan']!r} (one of: {slugs}).")
        actor = None
        if options.get("actor") is not None:
            actor = User.objects.filter(
                email__iexact=options["actor"].strip(), is_active=True, is_staff=True
            ).first()
            if actor is None:
                raise CommandError(f"--actor {options['actor']}: no active staff user has it.")
        before = organization.plan
        organization = organization_change_plan(
            actor=actor, organization=organization, plan=plan, as_operator=True, source="command"
        )
        changed = before.pk != plan.pk
        if options["json"]:
            payload = {
                "id": organization.public_id,
                "name": organization.name,
                "plan": plan.slug,
                "changed": changed,
            }
            self.stdout.write(json.dumps(payload))
        elif changed:
            self.stdout.write(
                f"{organization.name} ({organization.public_id}): {before.name} -> {plan.name}"
            )
        else:
            self.stdout.write(
                f"{organization.name} ({organization.public_id}) is already on {plan.name}."
            )
