"""`manage.py warden_bootstrap`: ensure a user, an organisation and its owner membership.

Idempotent: a second run reuses the user (by email), the organisation (by name) and the
membership. ``--password`` sets the password on every run; without it a new user gets a
generated one (printed once) and an existing user keeps theirs. ``--plan`` sets the plan.
The email address is marked verified so the login works at once.

Extending it (e.g. ``--agent NAME``): add the argument in ``add_arguments`` and a step in
``build_result`` that adds its own key to the result dict; ``handle`` only prints.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Plan
from accounts.services import organization_bootstrap
from wardenproject.errors import DomainError


class Command(BaseCommand):
    help = "Create (or reuse) a user, an organisation and the owner membership."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", required=True, help="Organisation name.")
        parser.add_argument("--email", required=True, help="Owner's email address.")
        parser.add_argument("--password", help="Owner's password (set on every run).")
        parser.add_argument(
            "--plan", choices=list(Plan.Slug.values), help="Plan of the organisation."
        )
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def build_result(self, options: dict[str, Any]) -> dict[str, Any]:
        """Do the work and return the JSON-ready result; extensions add their keys here."""
        name = options["org"].strip()
        if not name:
            raise CommandError("--org must not be empty.")
        plan = Plan.objects.filter(slug=options["plan"]).first() if options["plan"] else None
        try:
            made = organization_bootstrap(
                org_name=name, email=options["email"], password=options["password"], plan=plan
            )
        except DomainError as exc:
            raise CommandError(exc.detail) from exc
        organization, user = made["organization"], made["user"]
        self._made = made
        return {
            "org": {
                "id": organization.public_id,
                "name": organization.name,
                "plan": organization.plan.slug,
            },
            "user": {"email": user.email, "password": made["password"]},
        }

    def handle(self, *args: Any, **options: Any) -> None:
        result = self.build_result(options)
        if options["json"]:
            self.stdout.write(json.dumps(result))
            return
        created = self._made["created"]
        org, user = result["org"], result["user"]
        self.stdout.write(
            f"{'Created' if created['user'] else 'Reused'} user {user['email']} (email verified)"
        )
        self.stdout.write(
            f"{'Created' if created['organization'] else 'Reused'} organisation "
            f"{org['name']} ({org['id']}) on the {org['plan']} plan"
        )
        self.stdout.write(f"{'Created' if created['membership'] else 'Reused'} owner membership")
        if user["password"]:
            self.stdout.write(f"Password: {user['password']}")
