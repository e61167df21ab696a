"""Policy as code from the command line.

    manage.py warden_policy import FILE --org ORG [--actor EMAIL] [--note TEXT]
        (creates the agent if missing)
    manage.py warden_policy export --org ORG --agent AGENT [--format yaml|json] [--output F]
    manage.py warden_policy rebuild-counters --org ORG [--agent AGENT]
    manage.py warden_policy backtest FILE --org ORG --agent AGENT --since 7d
        [--until TIME] [--limit N] [--json]

ORG is an organisation's public id (org_...) or exact name; AGENT a public id or name.
An import is audited: ``--actor EMAIL`` names the member who made it (one allowed to manage
agents and rules); without it the entry names the system. Source ``command`` either way.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.http import Http404

from accounts.models import Organization, User
from accounts.permissions import Capability
from agents import selectors, services
from agents.backtest import MAX_CALLS, agent_policy_backtest
from agents.policy_document import PolicyDocumentError
from wardenproject.commands import actor_argument, actor_from, organization_from
from wardenproject.errors import DomainError


class Command(BaseCommand):
    help = "Import or export an agent's policy document (YAML or JSON)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="verb", required=True)
        importer = sub.add_parser("import", help="Apply a document: all rules or none.")
        importer.add_argument("file", help="Path of the YAML/JSON document, or - for stdin.")
        importer.add_argument("--org", required=True)
        actor_argument(importer)
        importer.add_argument("--note", default="", help="Kept with the policy version it makes.")
        exporter = sub.add_parser("export", help="Print an agent's document.")
        exporter.add_argument("--org", required=True)
        exporter.add_argument("--agent", required=True)
        exporter.add_argument("--format", choices=["yaml", "json"], default="yaml")
        exporter.add_argument("--output", help="Write here instead of standard output.")
        rebuild = sub.add_parser(
            "rebuild-counters",
            help="Recompute running totals from the audit log (every agent, or one).",
        )
        rebuild.add_argument("--org", required=True)
        rebuild.add_argument("--agent", help="Only this agent (public id or name).")
        backtest = sub.add_parser(
            "backtest",
            help="Replay an agent's recorded calls against a policy document; changes nothing.",
        )
        backtest.add_argument("file", help="Path of the YAML/JSON document, or - for stdin.")
        backtest.add_argument("--org", required=True)
        backtest.add_argument("--agent", required=True)
        backtest.add_argument(
            "--since", required=True, help="ISO-8601 time, or a duration before now (7d, 12h)."
        )
        backtest.add_argument("--until", help="ISO-8601 time or duration before now; default now.")
        backtest.add_argument(
            "--limit", type=int, help=f"Calls replayed at most (default and maximum {MAX_CALLS})."
        )
        backtest.add_argument("--json", action="store_true", help="Print the result as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        organization = organization_from(options["org"])
        if options["verb"] == "import":
            actor = actor_from(
                options["actor"], organization=organization, capability=Capability.MANAGE_AGENTS
            )
            self._import(organization, options["file"], actor, options.get("note") or "")
        elif options["verb"] == "rebuild-counters":
            self._rebuild(organization, options.get("agent"))
        elif options["verb"] == "backtest":
            self._backtest(organization, options)
        else:
            self._export(organization, options)

    def _import(
        self, organization: Organization, file: str, actor: User | None, note: str = ""
    ) -> None:
        raw = _read(file)
        fmt = (
            "json"
            if file.endswith(".json")
            else "yaml"
            if file.endswith((".yml", ".yaml"))
            else None
        )
        try:
            document = services.policy_document_parse(
                organization=organization, text=raw, format=fmt
            )
            agent = services.policy_import(
                organization=organization,
                document=document,
                actor=actor,
                source="command",
                note=note,
            )
        except PolicyDocumentError as exc:
            raise CommandError(str(exc)) from None
        except DomainError as exc:
            raise CommandError(exc.detail) from None
        self.stdout.write(
            f"Imported {len(document.rules)} rule(s) for agent {agent.name} ({agent.public_id})."
        )

    def _export(self, organization: Organization, options: dict[str, Any]) -> None:
        try:
            agent = selectors.agent_get(organization=organization, ref=options["agent"])
        except Http404:
            raise CommandError(f"No agent {options['agent']!r} in {organization.name}.") from None
        text = services.policy_export(agent=agent, format=options["format"])
        if options.get("output"):
            Path(options["output"]).write_text(text, encoding="utf-8")
        else:
            self.stdout.write(text, ending="")

    def _rebuild(self, organization: Organization, agent_ref: str | None) -> None:
        if agent_ref:
            try:
                agents = [selectors.agent_get(organization=organization, ref=agent_ref)]
            except Http404:
                raise CommandError(f"No agent {agent_ref!r} in {organization.name}.") from None
        else:
            agents = list(selectors.agent_list(organization=organization))
        for agent in agents:
            counters = services.limit_counters_rebuild(agent=agent)
            self.stdout.write(f"{agent.name}: {counters} running total(s) rebuilt.")

    def _backtest(self, organization: Organization, options: dict[str, Any]) -> None:
        try:
            agent = selectors.agent_get(organization=organization, ref=options["agent"])
        except Http404:
            raise CommandError(f"No agent {options['agent']!r} in {organization.name}.") from None
        raw = _read(options["file"])
        try:
            result = agent_policy_backtest(
                agent=agent,
                policy=raw.decode("utf-8"),
                since=options["since"],
                until=options.get("until"),
                limit=options.get("limit"),
            )
        except UnicodeDecodeError:
            raise CommandError(f"{options['file']} is not UTF-8 text.") from None
        except DomainError as exc:
            problems = exc.extra.get("errors") or []
            lines = [exc.detail] + [
                f"- {p['path'] or p['field']}: {p['message']}" for p in problems
            ]
            raise CommandError("\n".join(lines)) from None
        if options["json"]:
            self.stdout.write(json.dumps(result, indent=2, default=str))
            return
        self.stdout.write(
            f"{result['calls']} call(s) of {agent.name} from {result['since']} to "
            f"{result['until']} replayed"
            + (f" (stopped at the limit of {result['limit']})" if result["truncated"] else "")
            + f": {result['changed']} answer(s) would change."
        )
        for transition, count in result["transitions"].items():
            self.stdout.write(f"  {transition}: {count}")
        for row in result["by_rule"]:
            self.stdout.write(
                f"  rule {row['rule']!r}: matched {row['matched']}, changed {row['changed']}"
            )
        for sample in result["samples"][:10]:
            self.stdout.write(
                f"  {sample['action_id']} {sample['action']}: {sample['was']} -> "
                f"{sample['would_be']} ({sample['reason']})"
            )


def _read(file: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        raise CommandError(f"Cannot read {file}: {exc}") from None
