"""`manage.py warden_webhook create|list|rotate|reencrypt`: webhook endpoints from the shell.

``create`` and ``rotate`` are audited; ``--actor EMAIL`` names the member on whose behalf
they run (without it the audit entry names the system), source ``command``.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Organization
from accounts.permissions import Capability
from wardenproject.commands import actor_argument, actor_from, organization_from
from wardenproject.errors import DomainError
from webhooks import selectors, services
from webhooks.api import endpoint_json
from webhooks.models import Endpoint


class Command(BaseCommand):
    help = (
        "Create, list or rotate webhook endpoints (the secret is printed once), or re-encrypt "
        "every stored secret under the current SECRET_KEY."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)
        create = sub.add_parser("create", help="Create an endpoint and print its secret.")
        create.add_argument("--org", required=True, help="Organisation public id or name.")
        create.add_argument("--url", required=True)
        create.add_argument("--format", default="standard", choices=list(Endpoint.Format.values))
        create.add_argument(
            "--events",
            default=",".join(services.DEFAULT_EVENTS),
            help="Comma-separated event types (arden: decision events only).",
        )
        create.add_argument("--description", default="")
        create.add_argument("--agents", default="", help="Comma-separated agent ids or names.")
        create.add_argument("--json", action="store_true")
        actor_argument(create)
        listing = sub.add_parser("list", help="List an organisation's endpoints.")
        listing.add_argument("--org", required=True)
        listing.add_argument("--json", action="store_true")
        rotate = sub.add_parser("rotate", help="Rotate an endpoint's secret and print it.")
        rotate.add_argument("--org", required=True)
        rotate.add_argument("endpoint", help="Endpoint id (we_...).")
        rotate.add_argument("--json", action="store_true")
        actor_argument(rotate)
        sub.add_parser(
            "reencrypt",
            help="Re-encrypt every endpoint's stored secrets under the current SECRET_KEY "
            "(after a SECRET_KEY rotation, before the old key leaves SECRET_KEY_FALLBACKS).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["subcommand"] == "reencrypt":
            self._reencrypt()
            return
        organization = organization_from(options["org"])
        try:
            getattr(self, f"_{options['subcommand']}")(organization, options)
        except DomainError as exc:
            raise CommandError(exc.detail) from None

    def _reencrypt(self) -> None:
        result = services.endpoint_secrets_reencrypt()
        self.stdout.write(
            f"Re-encrypted {result.secrets} secrets of {result.endpoints} endpoints "
            "under the current SECRET_KEY."
        )
        if result.unreadable:
            raise CommandError(
                "These secrets cannot be read with SECRET_KEY or SECRET_KEY_FALLBACKS "
                f"(rotate them, or add the key they were stored under to SECRET_KEY_FALLBACKS "
                f"and run this again): {', '.join(result.unreadable)}"
            )

    def _emit(self, payload: Any, as_json: bool, text: str) -> None:
        self.stdout.write(json.dumps(payload) if as_json else text)

    def _create(self, organization: Organization, options: dict[str, Any]) -> None:
        agents = [a.strip() for a in options["agents"].split(",") if a.strip()]
        actor = actor_from(
            options["actor"], organization=organization, capability=Capability.MANAGE_WEBHOOKS
        )
        created = services.endpoint_create(
            organization=organization,
            actor=actor,
            source="command",
            url=options["url"],
            events=options["events"],
            fmt=options["format"],
            description=options["description"],
            agents=agents or None,
        )
        self._emit(
            {"id": created.endpoint.public_id, "secret": created.secret},
            options["json"],
            f"Created {created.endpoint.public_id} -> {created.endpoint.url}\n"
            f"Signing secret (shown once): {created.secret}",
        )

    def _list(self, organization: Organization, options: dict[str, Any]) -> None:
        endpoints = [endpoint_json(e) for e in selectors.endpoint_list(organization=organization)]
        text = "\n".join(
            f"{e['id']}  {e['format']:<11}  {'on ' if e['enabled'] else 'off'}  {e['url']}"
            for e in endpoints
        )
        self._emit(endpoints, options["json"], text or "No endpoints.")

    def _rotate(self, organization: Organization, options: dict[str, Any]) -> None:
        endpoint = Endpoint.objects.filter(
            organization=organization, public_id=options["endpoint"]
        ).first()
        if endpoint is None:
            raise CommandError(f"No endpoint {options['endpoint']!r} in {organization.name}.")
        actor = actor_from(
            options["actor"], organization=organization, capability=Capability.MANAGE_WEBHOOKS
        )
        rotated = services.endpoint_rotate_secret(endpoint=endpoint, actor=actor, source="command")
        endpoint = rotated.endpoint
        self._emit(
            {
                "id": endpoint.public_id,
                "secret": rotated.secret,
                "previous_secret_expires_at": endpoint.previous_secret_expires_at.isoformat()
                if endpoint.previous_secret_expires_at
                else None,
            },
            options["json"],
            f"New signing secret for {endpoint.public_id} (shown once): {rotated.secret}",
        )
