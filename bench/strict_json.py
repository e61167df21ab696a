"""CPU per body of the strict JSON reader against the plain ``json.loads`` it replaced.

    .venv/bin/python bench/strict_json.py [--rounds 7] [--number 20000]

No database, no server: ``wardenproject.strictjson.json_parse`` and the previous reader of
the check endpoints (``json.loads(raw, parse_constant=...)`` on the bytes) are timed on the
same bodies, alternating round by round; the best round of each is printed in µs per body.
The bodies: the load benchmark's check body (bench/check_load.py), one with non-ASCII text
sent as \\u escapes (as Python's json.dumps sends it, which makes the reader walk the value),
and one with a list of 100 small objects (more brackets than MAX_DEPTH: walked too).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wardenproject.settings.test")

from check_load import BODY

BODIES = {
    "check body (bench/check_load.py)": BODY.encode(),
    "non-ASCII text as \\u escapes": json.dumps(
        {
            "action": "email.send",
            "arguments": {"to": "zoë@example.com", "subject": "Grüße 😀", "body": "日本語"},
            "session_id": "s1",
        }
    ).encode(),
    "100 small objects in a list": json.dumps(
        {"action": "crm.import", "arguments": {"rows": [{"id": i, "ok": True} for i in range(100)]}}
    ).encode(),
}


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def previous_reader(raw: bytes) -> object:
    return json.loads(raw, parse_constant=_reject_constant)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=20_000)
    args = parser.parse_args()

    import django

    django.setup()
    from wardenproject.strictjson import json_parse

    for name, raw in BODIES.items():
        assert json_parse(raw) == previous_reader(raw)
        best = {"json.loads": float("inf"), "json_parse": float("inf")}
        for _ in range(args.rounds):
            for label, reader in (("json.loads", previous_reader), ("json_parse", json_parse)):
                seconds = timeit.timeit(lambda r=reader, b=raw: r(b), number=args.number)
                best[label] = min(best[label], seconds / args.number)
        before, after = best["json.loads"] * 1e6, best["json_parse"] * 1e6
        print(
            f"{name} ({len(raw)} bytes): json.loads {before:.2f} µs, json_parse {after:.2f} µs"
            f" ({after - before:+.2f} µs)"
        )


if __name__ == "__main__":
    main()
