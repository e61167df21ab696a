"""The tamper-evident audit chain: sealing, signed checkpoints, verification (in the database
and of an export, offline), retention, TRUNCATE, and the stream for log collectors."""

from __future__ import annotations

import io
import itertools
import json
import os
import stat
import threading
import time
from datetime import timedelta
from http import HTTPStatus

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, connections, transaction
from django.urls import reverse
from django.utils import timezone

from accounts.services import organization_delete
from audit.chain import GENESIS, chained_fields, entry_content, link_hash
from audit.keyring import signing_key
from audit.models import AuditChainHead, AuditCheckpoint, AuditEntry, AuditLink, AuditSealState
from audit.services import (
    audit_checkpoints_sign,
    audit_purge_before,
    audit_record,
    audit_seal,
)
from audit.signing import new_private_key, private_key_text, public_key_text
from tests.audit.test_audit import a_check
from tests.live import wait_until

pytestmark = pytest.mark.django_db

KEY_A = new_private_key()
KEY_B = new_private_key()


def public(key) -> str:
    return public_key_text(key.public_key())


def seal(checkpoint: bool = True) -> None:
    audit_seal()
    if checkpoint:
        audit_checkpoints_sign(force=True)


def verify(org, *args: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("warden_audit", "verify", "--org", org.public_id, *args, stdout=out, stderr=err)
    return out.getvalue()


def verify_fails(org, *args: str) -> str:
    with pytest.raises(CommandError) as failure:
        verify(org, *args)
    return str(failure.value)


def log_entries(org, count: int, **fields) -> list[AuditEntry]:
    return [
        audit_record(organization=org, kind="log", action=f"step.{n}", **fields)
        for n in range(count)
    ]


def links_of(org) -> list[AuditLink]:
    return list(AuditLink.objects.filter(organization=org).select_related("entry").order_by("seq"))


# --- Sealing --------------------------------------------------------------------------------


def test_a_check_is_answered_unsealed_and_sealed_by_the_task_afterwards(client, keys, alice):
    action_id = a_check(client, keys.live)
    assert not AuditLink.objects.exists()  # nothing on the check path
    client.force_login(alice)
    assert client.get(f"/api/v1/actions/{action_id}").json()["sealed"] is False

    call_command("warden_audit", "seal", stdout=io.StringIO())

    assert client.get(f"/api/v1/actions/{action_id}").json()["sealed"] is True
    assert "OK" in verify(keys.live_key.organization)


def test_every_entry_of_an_org_gets_one_link_in_order_and_the_chain_verifies(org_a, org_c):
    mine = log_entries(org_a, 5)
    theirs = log_entries(org_c, 2)
    seal()

    links = links_of(org_a)
    assert [link.entry_id for link in links] == [e.id for e in mine]
    assert [link.seq for link in links] == [1, 2, 3, 4, 5]
    assert links[0].prev == GENESIS
    assert all(b.prev == a.hash for a, b in itertools.pairwise(links))
    assert [link.seq for link in links_of(org_c)] == [1, 2]
    assert {link.entry_id for link in links_of(org_c)} == {e.id for e in theirs}
    assert "OK" in verify(org_a) and "5 entries" in verify(org_a)


def test_the_hash_covers_every_column_in_the_documented_canonical_form(org_a):
    entry = audit_record(
        organization=org_a, kind="log", action="kb.search", arguments={"q": "é", "n": 1.5}
    )
    seal()
    link = AuditLink.objects.get(entry=entry)
    content = entry_content(AuditEntry.objects.get(pk=entry.pk))
    assert content["arguments"] == {"q": "é", "n": 1.5}
    assert content["created_at"].endswith("Z")
    assert "id" not in content and "organization_id" not in content
    assert link.hash == link_hash(prev=GENESIS, org=org_a.public_id, seq=1, content=content)


def test_new_audit_columns_default_to_empty_so_old_hashes_survive_the_migration():
    """A column added with a non-empty default would change the content of every sealed
    entry (audit/chain.py): give it null=True, blank=True with "", {} or [] instead."""
    always_set = {"public_id", "kind", "created_at", "data"}
    for column in chained_fields():
        if column.name in always_set:
            continue
        default = column.get_default()
        assert default in (None, "") or default == {} or default == [], column.name


def test_a_late_commit_below_the_watermark_is_sealed_after_what_passed_it(org_a, client, alice):
    """Ids are given out at INSERT and seen at COMMIT: the row with the smaller id shows up
    last. Explicit ids reproduce that on both databases."""
    first = audit_record(organization=org_a, kind="log", action="first")
    seal()
    late_id, early_id = first.id + 1_000_000, first.id + 1_000_001
    audit_record(organization=org_a, kind="log", action="committed first", id=early_id)
    seal()
    assert [first.id + 1, late_id] in [gap[:2] for gap in AuditSealState.objects.get().gaps]
    audit_record(organization=org_a, kind="log", action="committed late", id=late_id)
    seal()

    actions = [link.entry.action for link in links_of(org_a)]
    assert actions == ["first", "committed first", "committed late"]
    gaps = [gap[:2] for gap in AuditSealState.objects.get().gaps]
    assert [first.id + 1, late_id - 1] in gaps and [first.id + 1, late_id] not in gaps
    assert "OK" in verify(org_a)


def test_late_commits_in_many_gaps_are_sealed_through_one_range(org_a, monkeypatch):
    monkeypatch.setattr("audit.services.MAX_GAP_RANGES", 1)
    first = audit_record(organization=org_a, kind="log", action="first")
    for offset in (2, 4, 6):  # holes at +1, +3 and +5
        audit_record(organization=org_a, kind="log", action=f"at {offset}", id=first.id + offset)
    seal()
    for offset in (1, 5):
        audit_record(organization=org_a, kind="log", action=f"late {offset}", id=first.id + offset)
    seal()
    assert [link.entry.action for link in links_of(org_a)][-2:] == ["late 1", "late 5"]
    assert [first.id + 3, first.id + 3] in [g[:2] for g in AuditSealState.objects.get().gaps]
    assert "OK" in verify(org_a)


def test_a_gap_given_up_after_the_lookback_leaves_a_late_entry_out_and_verify_names_it(
    org_a, settings, monkeypatch
):
    settings.WARDEN_AUDIT_SEAL_LOOKBACK = 60
    first = audit_record(organization=org_a, kind="log", action="first")
    audit_record(organization=org_a, kind="log", action="next", id=first.id + 2)
    seal()
    later = time.time() + 61
    monkeypatch.setattr("audit.services._clock", lambda: later)
    seal()  # the gap (first.id + 1) expires
    assert AuditSealState.objects.get().gaps == []
    forged = audit_record(organization=org_a, kind="log", action="backdated", id=first.id + 1)
    seal()

    assert not AuditLink.objects.filter(entry=forged).exists()
    assert forged.public_id in verify_fails(org_a)


def test_sealing_again_seals_nothing_twice(org_a):
    log_entries(org_a, 2)
    assert audit_seal().sealed == 2
    assert audit_seal().sealed == 0


# --- Tampering, caught by verify (PostgreSQL: the triggers are switched off first) ----------


def _tamper(sql: str, params: list | tuple = ()) -> None:
    with connection.cursor() as cursor:
        # ALTER TABLE waits for no deferred foreign-key checks of this transaction.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        for table in ("audit_auditentry", "audit_auditlink", "audit_auditcheckpoint"):
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        cursor.execute(sql, params)
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        for table in ("audit_auditentry", "audit_auditlink", "audit_auditcheckpoint"):
            cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


@pytest.fixture
def sealed_chain(org_a) -> list[AuditEntry]:
    entries = log_entries(org_a, 6, reason="as it happened")
    seal()
    assert "OK" in verify(org_a)
    return entries


@pytest.mark.postgres
def test_verify_names_an_entry_changed_behind_the_triggers_back(org_a, sealed_chain):
    changed = sealed_chain[2]
    _tamper("UPDATE audit_auditentry SET reason = 'nothing happened' WHERE id = %s", [changed.id])
    message = verify_fails(org_a)
    assert changed.public_id in message and "changed" in message


@pytest.mark.postgres
def test_verify_names_where_an_entry_was_deleted(org_a, sealed_chain):
    gone, after = sealed_chain[3], sealed_chain[4]
    _tamper("DELETE FROM audit_auditlink WHERE entry_id = %s", [gone.id])
    _tamper("DELETE FROM audit_auditentry WHERE id = %s", [gone.id])
    message = verify_fails(org_a)
    assert "seq 4" in message and "deleted" in message and after.public_id in message


@pytest.mark.postgres
def test_verify_names_an_entry_deleted_from_the_end_that_a_checkpoint_covered(org_a, sealed_chain):
    last = sealed_chain[-1]
    _tamper("DELETE FROM audit_auditlink WHERE entry_id = %s", [last.id])
    _tamper("DELETE FROM audit_auditentry WHERE id = %s", [last.id])
    message = verify_fails(org_a)
    assert "seq 6" in message and "deleted" in message


@pytest.mark.postgres
def test_verify_names_a_forged_entry_spliced_into_the_chain(org_a, sealed_chain):
    links = links_of(org_a)
    forged = AuditEntry(organization=org_a, kind="log", action="refund.approve", reason="forged")
    forged.save(force_insert=True)
    # Make room at seq 3 and link the forged entry there with a correct hash of its own.
    _tamper(
        "UPDATE audit_auditlink SET seq = seq + 1000 WHERE organization_id = %s AND seq >= 3",
        [org_a.pk],
    )
    _tamper(
        "UPDATE audit_auditlink SET seq = seq - 999 WHERE organization_id = %s AND seq > 1000",
        [org_a.pk],
    )
    forged_hash = link_hash(
        prev=links[1].hash,
        org=org_a.public_id,
        seq=3,
        content=entry_content(AuditEntry.objects.get(pk=forged.pk)),
    )
    _tamper(
        "INSERT INTO audit_auditlink (organization_id, seq, entry_id, version, prev, hash, "
        "sealed_at) VALUES (%s, 3, %s, 1, %s, %s, now())",
        [org_a.pk, forged.pk, links[1].hash, forged_hash],
    )
    message = verify_fails(org_a)
    assert forged.public_id in message and "inserted" in message


@pytest.mark.postgres
def test_verify_names_a_forged_entry_inserted_without_a_link(org_a, sealed_chain):
    forged = AuditEntry(organization=org_a, kind="log", action="refund.approve")
    forged.save(force_insert=True)
    # A forged row with an id from the sequence (above the watermark) would be chained as a
    # new entry, which nothing but the signing can tell from a real one. With an id the
    # sealer has passed (and in no gap), it is named:
    _tamper("UPDATE audit_auditentry SET id = -42 WHERE id = %s", [forged.id])
    assert forged.public_id in verify_fails(org_a)


@pytest.mark.postgres
def test_verify_names_the_first_of_two_entries_whose_times_were_swapped(org_a, sealed_chain):
    one, two = sealed_chain[1], sealed_chain[2]
    _tamper(
        "UPDATE audit_auditentry SET created_at = CASE id WHEN %s THEN %s ELSE %s END "
        "WHERE id IN (%s, %s)",
        [one.id, two.created_at, one.created_at, one.id, two.id],
    )
    message = verify_fails(org_a)
    assert one.public_id in message and "changed" in message


@pytest.mark.postgres
def test_a_consistently_rehashed_rewrite_is_caught_by_the_signed_checkpoint(org_a, sealed_chain):
    _tamper("UPDATE audit_auditentry SET reason = 'rewritten' WHERE id = %s", [sealed_chain[1].id])
    prev = links_of(org_a)[0].hash
    for link in links_of(org_a)[1:]:
        new_hash = link_hash(
            prev=prev, org=org_a.public_id, seq=link.seq, content=entry_content(link.entry)
        )
        _tamper(
            "UPDATE audit_auditlink SET prev = %s, hash = %s WHERE id = %s",
            [prev, new_hash, link.id],
        )
        prev = new_hash
    message = verify_fails(org_a)
    assert "checkpoint" in message and "rewritten" in message


@pytest.mark.postgres
def test_a_forged_checkpoint_signature_fails(org_a, sealed_chain):
    _tamper("UPDATE audit_auditcheckpoint SET hash = %s", ["0" * 64])
    assert "signature does not match" in verify_fails(org_a)


@pytest.mark.postgres
def test_postgres_refuses_to_truncate_the_audit_log_and_its_chain(org_a, sealed_chain):
    for table in ("audit_auditentry", "audit_auditlink", "audit_auditcheckpoint"):
        with (
            pytest.raises(DatabaseError, match="truncate refused"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no deferred checks pending
            cursor.execute(f"TRUNCATE {table} CASCADE")
    assert AuditEntry.objects.filter(organization=org_a).count() == 6


@pytest.mark.postgres
def test_postgres_refuses_to_change_or_delete_a_link(org_a, sealed_chain):
    link = links_of(org_a)[0]
    for sql in (
        "UPDATE audit_auditlink SET hash = 'x' WHERE id = %s",
        "DELETE FROM audit_auditlink WHERE id = %s",
    ):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, [link.id])


# --- Checkpoints and keys -------------------------------------------------------------------


def test_checkpoints_are_signed_and_listed_with_the_public_keys(client, org_a, alice, settings):
    settings.WARDEN_AUDIT_SIGNING_KEYS = [private_key_text(KEY_A)]
    log_entries(org_a, 2)
    seal()
    log_entries(org_a, 1)
    seal()
    client.force_login(alice)

    first = client.get("/api/v1/audit/checkpoints?limit=1").json()
    second = client.get(f"/api/v1/audit/checkpoints?limit=1&after={first['next']}").json()

    assert first["public_keys"][0] == {
        "key_id": first["results"][0]["key_id"],
        "public_key": public(KEY_A),
        "algorithm": "ed25519",
        "signing": True,
    }
    assert [c["seq"] for c in first["results"] + second["results"]] == [2, 3]
    assert second["next"] is None
    assert second["results"][0]["hash"] == links_of(org_a)[-1].hash
    assert second["results"][0]["signature"]


def test_a_head_is_signed_at_most_once_a_minute_and_at_least_when_due(org_a, settings):
    settings.WARDEN_AUDIT_CHECKPOINT_INTERVAL = 60
    log_entries(org_a, 1)
    audit_seal()
    log_entries(org_a, 1)
    audit_seal()
    assert list(AuditCheckpoint.objects.values_list("seq", flat=True)) == [1]
    head = AuditChainHead.objects.get(pk=org_a.pk)
    assert audit_checkpoints_sign(now=head.checkpoint_at + timedelta(seconds=61)) == 1
    assert list(AuditCheckpoint.objects.order_by("id").values_list("seq", flat=True)) == [1, 2]


def test_a_bad_checkpoint_cursor_is_a_400_naming_after(client, alice, org_a):
    client.force_login(alice)
    response = client.get("/api/v1/audit/checkpoints?after=x")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == "after"


def test_rotated_keys_keep_old_checkpoints_verifiable(org_a, settings):
    settings.WARDEN_AUDIT_SIGNING_KEYS = [private_key_text(KEY_A)]
    log_entries(org_a, 2)
    seal()
    settings.WARDEN_AUDIT_SIGNING_KEYS = [private_key_text(KEY_B)]
    settings.WARDEN_AUDIT_PUBLIC_KEYS = [public(KEY_A)]
    log_entries(org_a, 2)
    seal()

    assert AuditCheckpoint.objects.values("key_id").distinct().count() == 2
    assert "2 checkpoints verified" in verify(org_a)
    settings.WARDEN_AUDIT_PUBLIC_KEYS = []
    assert "unknown key" in verify_fails(org_a)


def test_without_a_key_outside_debug_nothing_is_signed_and_start_up_warns(org_a, settings):
    settings.WARDEN_AUDIT_SIGNING_KEYS = []
    settings.DEBUG = False
    log_entries(org_a, 1)
    assert audit_seal().checkpoints == 0
    assert not AuditCheckpoint.objects.exists()
    assert "audit.W001" in [m.id for m in checks.run_checks(tags=["security"])]
    assert AuditLink.objects.count() == 1  # still chained


def test_debug_without_a_key_makes_a_development_key_once(settings, tmp_path):
    settings.WARDEN_AUDIT_SIGNING_KEYS = []
    settings.DEBUG = True
    settings.VAR_DIR = tmp_path
    key = signing_key()
    path = tmp_path / "audit-signing.key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    settings.WARDEN_AUDIT_PUBLIC_KEYS = []  # re-read the settings
    assert public_key_text(signing_key().public_key()) == public_key_text(key.public_key())


# --- Exports, verified offline --------------------------------------------------------------


@pytest.fixture
def export_file(org_a, tmp_path, settings):
    settings.WARDEN_AUDIT_SIGNING_KEYS = [private_key_text(KEY_A)]
    log_entries(org_a, 4, reason="refund of 150 € approved")
    seal()
    log_entries(org_a, 2)
    seal(checkpoint=False)  # two entries after the last checkpoint
    path = tmp_path / "audit.jsonl"
    call_command(
        "warden_audit", "export", "--org", org_a.public_id, "--chain", "--output", str(path)
    )
    return path


def verify_export(path, *keys: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    args = [a for key in keys for a in ("--public-key", key)]
    call_command("warden_audit", "verify-export", str(path), *args, stdout=out, stderr=err)
    return out.getvalue()


def test_an_export_verifies_offline_without_the_database(export_file, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert "OK" in verify_export(export_file, public(KEY_A))
    lines = export_file.read_bytes().splitlines()
    assert [json.loads(line)["type"] for line in lines].count("entry") == 6


def test_an_export_verifies_with_a_public_key_file(export_file, tmp_path):
    key_file = tmp_path / "key.pub"
    key_file.write_text(public(KEY_A))
    assert "OK" in verify_export(export_file, str(key_file))


@pytest.mark.parametrize(
    "needle",
    [b"refund of 15", b'"seq":2', b'"hash":"', b'"org":"', b'"signature":"', b'"sha256":"'],
    ids=["content", "seq", "hash", "header", "checkpoint", "end"],
)
def test_an_export_fails_after_a_one_byte_edit(export_file, needle):
    data = bytearray(export_file.read_bytes())
    at = data.index(needle) + len(needle)  # the byte just after the needle
    data[at] = ord("1") if data[at] != ord("1") else ord("2")
    export_file.write_bytes(bytes(data))
    with pytest.raises(CommandError, match="FAILED"):
        verify_export(export_file, public(KEY_A))


def test_an_export_fails_after_a_space_is_added(export_file):
    export_file.write_bytes(export_file.read_bytes().replace(b'"kind":', b'"kind": ', 1))
    with pytest.raises(CommandError, match="edited"):
        verify_export(export_file, public(KEY_A))


def test_an_export_cut_short_or_checked_with_another_key_fails(export_file):
    with pytest.raises(CommandError, match="unknown key"):
        verify_export(export_file, public(KEY_B))
    lines = export_file.read_bytes().splitlines(keepends=True)
    export_file.write_bytes(b"".join(lines[:-2] + lines[-1:]))
    with pytest.raises(CommandError, match="FAILED"):
        verify_export(export_file, public(KEY_A))


def test_a_partial_export_since_a_date_verifies_from_its_checkpoint(org_a, tmp_path, settings):
    settings.WARDEN_AUDIT_SIGNING_KEYS = [private_key_text(KEY_A)]
    old = timezone.now() - timedelta(days=3)
    log_entries(org_a, 3, created_at=old)
    seal()
    log_entries(org_a, 2)
    seal()
    path = tmp_path / "since.jsonl"
    since = (timezone.now() - timedelta(days=1)).isoformat()
    call_command(
        "warden_audit", "export", "--org", org_a.public_id, "--chain", "--since", since,
        "--output", str(path),
    )  # fmt: skip
    assert "seq 4 to 5" in verify_export(path, public(KEY_A))
    assert "signed through seq 5" in verify(org_a, "--since", since)


# --- Retention ------------------------------------------------------------------------------


def test_retention_purges_a_prefix_and_the_rest_still_verifies(org_a, settings):
    now = timezone.now()
    old = log_entries(org_a, 3, created_at=now - timedelta(days=40))
    recent = log_entries(org_a, 2, created_at=now - timedelta(days=1))
    seal()

    assert audit_purge_before(organization=org_a, before=now - timedelta(days=30)) == 3

    assert not AuditEntry.objects.filter(pk__in=[e.pk for e in old]).exists()
    assert [link.entry_id for link in links_of(org_a)] == [e.pk for e in recent]
    purge = AuditCheckpoint.objects.get(kind="purge")
    assert (purge.seq, purge.signature != "") == (3, True)
    output = verify(org_a)
    assert "seq 4 to 5" in output


def test_retention_stops_at_the_first_entry_too_young_to_go(org_a):
    now = timezone.now()
    log_entries(org_a, 1, created_at=now - timedelta(days=40))
    log_entries(org_a, 1, created_at=now - timedelta(days=1))
    log_entries(org_a, 1, created_at=now - timedelta(days=40))  # sealed after a young one
    seal()
    assert audit_purge_before(organization=org_a, before=now - timedelta(days=30)) == 1
    assert [link.seq for link in links_of(org_a)] == [2, 3]
    assert "OK" in verify(org_a)


@pytest.mark.postgres
def test_a_purge_checkpoint_vouches_for_the_start_of_what_is_left(org_a):
    now = timezone.now()
    log_entries(org_a, 2, created_at=now - timedelta(days=40))
    kept = log_entries(org_a, 2)
    seal()
    audit_purge_before(organization=org_a, before=now - timedelta(days=30))
    _tamper("UPDATE audit_auditentry SET reason = 'x' WHERE id = %s", [kept[0].id])
    _tamper("UPDATE audit_auditlink SET prev = %s WHERE entry_id = %s", ["1" * 64, kept[0].id])
    assert "purge checkpoint" in verify_fails(org_a)


# --- The stream -----------------------------------------------------------------------------


def stream(client, after: str | None = None, limit: int = 2, **headers):
    url = f"/api/v1/audit/stream?limit={limit}" + (f"&after={after}" if after else "")
    response = client.get(url, **headers)
    assert response.status_code == HTTPStatus.OK, response.content
    lines = [json.loads(line) for line in response.content.decode().splitlines()]
    return lines, response["X-Warden-Next-Cursor"], response["X-Warden-More"]


def test_the_stream_pages_through_sealed_entries_in_chain_order(client, org_a, alice):
    entries = log_entries(org_a, 5)
    seal()
    log_entries(org_a, 1)  # not sealed yet: not streamed
    client.force_login(alice)

    seen, cursor, more = [], None, "true"
    while more == "true":
        lines, cursor, more = stream(client, cursor)
        seen += lines
    assert [line["id"] for line in seen] == [e.public_id for e in entries]
    assert [line["seq"] for line in seen] == [1, 2, 3, 4, 5]
    assert seen[-1]["cursor"] == cursor == "5"
    assert seen[1]["prev"] == seen[0]["hash"]
    assert stream(client, cursor) == ([], "5", "false")


def test_the_stream_picks_up_a_late_commit_once_without_a_gap(client, org_a, alice):
    first = audit_record(organization=org_a, kind="log", action="a")
    audit_record(organization=org_a, kind="log", action="c", id=first.id + 1_000_002)
    seal()
    client.force_login(alice)
    lines, cursor, _ = stream(client, limit=100)
    audit_record(organization=org_a, kind="log", action="b", id=first.id + 1_000_001)
    seal()
    more, cursor, _ = stream(client, cursor, limit=100)
    assert [line["action"] for line in lines + more] == ["a", "c", "b"]
    assert stream(client, cursor)[0] == []


def test_a_collector_reads_the_stream_with_an_org_key_but_not_an_agent_key(client, keys):
    a_check(client, keys.live)
    seal()
    lines, _, _ = stream(client, limit=100, HTTP_X_API_KEY=keys.org)
    assert lines[-1]["action"] == "kb.search"
    response = client.get("/api/v1/audit/stream", HTTP_X_API_KEY=keys.live)
    assert response.status_code == HTTPStatus.FORBIDDEN


@pytest.mark.parametrize("after", ["x", "-1", "1.5", "9" * 30])
def test_a_bad_stream_cursor_is_a_400_naming_after(client, alice, org_a, after):
    client.force_login(alice)
    response = client.get(f"/api/v1/audit/stream?after={after}")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == "after"


def test_a_stream_page_is_limited(client, alice, org_a):
    client.force_login(alice)
    response = client.get("/api/v1/audit/stream?limit=5001")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == "limit"


def test_an_outsider_streams_and_lists_nothing_of_another_org(client, keys, charlie, org_c):
    action_id = a_check(client, keys.live)
    seal()
    client.force_login(charlie)
    lines, _, _ = stream(client, limit=100)
    assert lines == []
    assert client.get("/api/v1/audit/checkpoints").json()["results"] == []
    assert client.get(f"/api/v1/actions/{action_id}").status_code == HTTPStatus.NOT_FOUND
    with pytest.raises(CommandError):
        call_command("warden_audit", "verify", "--org", "org_nosuch", stdout=io.StringIO())


# --- Concurrency (PostgreSQL) ---------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_out_of_order_commit_between_two_connections_is_sealed_and_streamed_once(
    client, org_a, alice
):
    inserted, release = threading.Event(), threading.Event()
    held: dict[str, AuditEntry] = {}

    def slow_writer() -> None:
        try:
            with transaction.atomic():
                held["entry"] = audit_record(organization=org_a, kind="log", action="slow")
                inserted.set()
                release.wait(10)
        finally:
            connections.close_all()

    writer = threading.Thread(target=slow_writer)
    writer.start()
    assert inserted.wait(10)
    quick = audit_record(organization=org_a, kind="log", action="quick")
    assert quick.id > held["entry"].id
    seal()
    client.force_login(alice)
    first_page, cursor, _ = stream(client, limit=100)
    release.set()
    writer.join(10)
    seal()
    second_page, cursor, _ = stream(client, cursor, limit=100)

    assert [line["action"] for line in first_page] == ["quick"]
    assert [line["action"] for line in second_page] == ["slow"]
    assert "OK" in verify(org_a)


def test_the_audit_page_shows_which_entries_are_not_yet_sealed(client, org_a, alice):
    log_entries(org_a, 1)
    client.force_login(alice)
    page = client.get(reverse("agents:audit")).content.decode()
    assert "not yet sealed" in page
    seal()
    page = client.get(reverse("agents:audit")).content.decode()
    assert "not yet sealed" not in page and "sealed #1" in page


@pytest.mark.postgres
@pytest.mark.live
def test_the_beat_task_seals_and_signs_new_entries_within_seconds(celery_worker, org_a):
    entry = audit_record(organization=org_a, kind="log", action="sealed by beat")
    started = time.monotonic()
    wait_until(
        lambda: AuditLink.objects.filter(entry=entry).exists(),
        timeout=30,
        what="the beat task audit.seal to link the entry",
    )
    assert time.monotonic() - started < 15
    wait_until(
        lambda: AuditCheckpoint.objects.filter(organization=org_a, seq=1).exists(),
        timeout=30,
        what="the sealer to sign the new chain's head",
    )
    assert "OK" in verify(org_a)


def test_deleting_an_organisation_takes_its_chain_and_checkpoints_with_it(org_a, org_c):
    log_entries(org_a, 3)
    log_entries(org_c, 1)
    seal()
    organization_delete(organization=org_a)
    assert not AuditLink.objects.filter(organization_id=org_a.pk).exists()
    assert not AuditCheckpoint.objects.filter(organization_id=org_a.pk).exists()
    assert "OK" in verify(org_c)
