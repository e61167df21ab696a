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
        parser.add_argument(
            "--agent", help="Also ensure this agent and print fresh test/live/org/approver keys."
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
        result = {
            "org": {
                "id": organization.public_id,
                "name": organization.name,
                "plan": organization.plan.slug,
            },
            "user": {"email": user.email, "password": made["password"]},
        }
        if options.get("agent"):
            result.update(self._agent_and_keys(organization, user, options["agent"].strip()))
        return result

    def _agent_and_keys(self, organization: Any, user: Any, name: str) -> dict[str, Any]:
        """The agent (reused by name) and fresh keys on every run; older keys stay valid."""
        from agents.models import Agent
        from agents.services import agent_create, api_key_create

        try:
            agent = Agent.objects.filter(organization=organization, name=name).first()
            if agent is None:
                agent = agent_create(
                    organization=organization, actor=user, name=name, source="bootstrap"
                )
            keys = {
                label: api_key_create(
                    organization=organization,
                    kind=kind,
                    actor=user,
                    agent=agent if kind == "agent" else None,
                    environment=environment,
                    name=f"bootstrap {label}",
                    source="bootstrap",
                )[1]
                for label, kind, environment in (
                    ("test_key", "agent", "test"),
                    ("live_key", "agent", "live"),
                    ("org_key", "org", None),
                    ("approver_key", "approver", None),
                )
            }
        except DomainError as exc:
            raise CommandError(exc.detail) from exc
        return {
            "agent": {
                "id": agent.public_id,
                "name": agent.name,
                "test_key": keys["test_key"],
                "live_key": keys["live_key"],
            },
            "org_key": keys["org_key"],
            "approver_key": keys["approver_key"],
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
        if "agent" in result:
            agent = result["agent"]
            self.stdout.write(f"Agent {agent['name']} ({agent['id']})")
            self.stdout.write(f"  test key: {agent['test_key']}")
            self.stdout.write(f"  live key: {agent['live_key']}")
            self.stdout.write(f"Org key: {result['org_key']}")
            self.stdout.write(f"Approver key: {result['approver_key']}")
