"""Exports an auditor can verify without Warden: ``warden_audit export --chain`` writes them,
``warden_audit verify-export FILE --public-key KEY`` checks them (no database).

Every line is one JSON object in the canonical serialisation (audit.signing.canonical_json)
followed by ``\\n``, in this order:

1. ``{"type": "warden.audit.export", "v": 1, "org": ..., "exported_at": ...,
   "public_keys": [...]}``
2. the checkpoints that bear on the exported links (``"type": "checkpoint"``: kind, seq,
   hash, at, key_id, signature), the one just before the first link included;
3. the links in chain order (``"type": "entry"``: seq, prev, hash and ``entry``, the
   entry's content exactly as hashed, see audit/chain.py);
4. ``{"type": "end", "lines": N, "sha256": ..., "key_id": ..., "signature": ...}``: the
   SHA-256 of every byte before it, signed with the server's signing key.

The verifier recomputes every hash, checks every checkpoint's signature and the closing
signature against the keys it is given, and refuses a line that is not byte for byte in
the canonical form, so any one-byte edit fails.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.utils import timezone

from accounts.models import Organization
from audit.chain import (
    ChainVerifier,
    CheckpointRecord,
    Problem,
    Report,
    chain_time,
    entry_content,
)
from audit.keyring import signing_key
from audit.models import AuditCheckpoint, AuditLink
from audit.selectors import audit_public_keys, chain_start_seq
from audit.signing import canonical_json, export_message, key_id, sign, verify

EXPORT_TYPE = "warden.audit.export"


def _line(value: dict[str, Any]) -> bytes:
    return canonical_json(value) + b"\n"


def chain_export_lines(
    *,
    organization: Organization,
    since: datetime | None = None,
    until: datetime | None = None,
    chunk: int = 2000,
) -> Iterator[bytes]:
    """The organisation's sealed chain (from the first link whose entry is not older than
    ``since`` to the last one older than ``until``), as the lines described above."""
    links = AuditLink.objects.filter(organization=organization)
    start = chain_start_seq(organization=organization, since=since)
    if since is not None:
        links = links.filter(seq__gte=start if start is not None else 2**62)
    if until is not None:
        last_seq = (
            links.filter(entry__created_at__lt=until)
            .order_by("-seq")
            .values_list("seq", flat=True)
            .first()
        )
        links = links.filter(seq__lte=last_seq if last_seq is not None else 0)
    digest = hashlib.sha256()
    count = 0

    def emit(value: dict[str, Any]) -> bytes:
        nonlocal count
        line = _line(value)
        digest.update(line)
        count += 1
        return line

    yield emit(
        {
            "type": EXPORT_TYPE,
            "v": 1,
            "org": organization.public_id,
            "exported_at": chain_time(timezone.now()),
            "public_keys": audit_public_keys(),
        }
    )
    bounds = links.order_by("seq").values_list("seq", flat=True)
    first, last = bounds.first(), links.order_by("-seq").values_list("seq", flat=True).first()
    if first is not None:
        checkpoints = AuditCheckpoint.objects.filter(
            organization=organization, seq__gte=first - 1, seq__lte=last
        ).order_by("seq", "id")
        for checkpoint in checkpoints.iterator(chunk_size=chunk):
            yield emit(
                {
                    "type": "checkpoint",
                    "kind": checkpoint.kind,
                    "seq": checkpoint.seq,
                    "hash": checkpoint.hash,
                    "at": chain_time(checkpoint.created_at),
                    "key_id": checkpoint.key_id,
                    "signature": checkpoint.signature,
                }
            )
    after = None
    while True:
        page = list(
            (links.filter(seq__gt=after) if after else links)
            .select_related("entry")
            .order_by("seq")[:chunk]
        )
        for link in page:
            yield emit(
                {
                    "type": "entry",
                    "seq": link.seq,
                    "prev": link.prev,
                    "hash": link.hash,
                    "entry": entry_content(link.entry),
                }
            )
        if len(page) < chunk:
            break
        after = page[-1].seq
    end: dict[str, Any] = {"type": "end", "lines": count, "sha256": digest.hexdigest()}
    key = signing_key()
    if key is not None:
        end["key_id"] = key_id(key.public_key())
        end["signature"] = sign(key, export_message(end["sha256"]))
    yield _line(end)


def export_verify(lines: Iterable[bytes], *, public_keys: list[Ed25519PublicKey]) -> Report:
    """Check an export made by ``chain_export_lines`` (see the module's docstring)."""
    keys = {key_id(key): key for key in public_keys}
    digest = hashlib.sha256()
    verifier: ChainVerifier | None = None
    checkpoints: list[CheckpointRecord] = []
    count = 0
    ended = False
    report: Report | None = None
    for number, raw in enumerate(lines, start=1):
        try:
            value = json.loads(raw)
            if not isinstance(value, dict) or _line(value) != raw:
                raise ValueError
        except ValueError:
            return _failed(report, f"line {number} is not as exported: it was edited")
        if ended:
            return _failed(report, f"line {number} follows the end line: lines were added")
        kind = value.get("type")
        if number == 1:
            if kind != EXPORT_TYPE or value.get("v") != 1 or not isinstance(value.get("org"), str):
                return _failed(report, "line 1 is not the header of a Warden audit export")
            report = Report(org=value["org"])
        elif kind == "checkpoint":
            if verifier is not None:
                return _failed(report, f"line {number}: a checkpoint after the entries")
            try:
                checkpoints.append(
                    CheckpointRecord(
                        kind=value["kind"],
                        seq=value["seq"],
                        hash=value["hash"],
                        created_at=value["at"],
                        key_id=value["key_id"],
                        signature=value["signature"],
                    )
                )
            except KeyError:
                return _failed(report, f"line {number}: an incomplete checkpoint")
        elif kind == "entry":
            if verifier is None:
                verifier = ChainVerifier(
                    org=report.org,  # type: ignore[union-attr]
                    public_keys=public_keys,
                    checkpoints=checkpoints,
                )
            try:
                content = value["entry"]
                verifier.feed(
                    seq=value["seq"],
                    prev=value["prev"],
                    chain_hash=value["hash"],
                    entry=str(content.get("public_id", "")),
                    content=content,
                )
            except (KeyError, TypeError, AttributeError, ValueError):
                return _failed(verifier.report, f"line {number}: an incomplete entry")
            if verifier.report.problem is not None:
                return verifier.finish()
        elif kind == "end":
            ended = True
            if value.get("lines") != count or value.get("sha256") != digest.hexdigest():
                return _failed(report, "the end line does not match the lines before it")
            key = keys.get(value.get("key_id", ""))
            if not value.get("signature"):
                return _failed(report, "the export is not signed")
            if key is None:
                return _failed(report, f"the export is signed by unknown key {value['key_id']}")
            if not verify(key, export_message(value["sha256"]), value["signature"]):
                return _failed(report, "the export's signature does not match")
            continue
        else:
            return _failed(report, f"line {number} is of unknown type {kind!r}")
        digest.update(raw)
        count += 1
    if report is None:
        return _failed(None, "the file is empty")
    if not ended:
        return _failed(report, "the export has no end line: it was cut short")
    if verifier is None:
        verifier = ChainVerifier(org=report.org, public_keys=public_keys, checkpoints=checkpoints)
    result = verifier.finish()
    if result.problem is None and result.signed_through != result.last_seq:
        result.warnings = [
            w for w in result.warnings if "after the last signed checkpoint" not in w
        ] + ["the entries after the last checkpoint are vouched for by the export's signature"]
    return result


def _failed(report: Report | None, message: str) -> Report:
    report = report or Report(org="")
    report.problem = report.problem or Problem(None, None, message)
    return report
