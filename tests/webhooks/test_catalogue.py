"""The event catalogue page, and its verification snippets checked against real signatures."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from http import HTTPStatus

import pytest
from requests.structures import CaseInsensitiveDict

from tests.conftest import PASSWORD
from webhooks import catalogue, formats, services


def login(client, user):
    assert client.login(email=user.email, password=PASSWORD)
    return client


def test_the_catalogue_shows_every_event_in_every_format(client, vera, org_a):
    login(client, vera)
    response = client.get("/webhooks/events/")
    assert response.status_code == HTTPStatus.OK
    page = response.content.decode()
    for event_type in services.EVENT_TYPES:
        assert f'id="event-{event_type}"' in page
    entries = response.context["entries"]
    assert [e.event_type for e in entries] == list(services.EVENT_TYPES)
    for entry in entries:
        assert [s.fmt for s in entry.samples] == ["standard", "arden", "agentwarden"]


def test_the_catalogue_samples_are_what_delivery_would_send():
    sample = catalogue.format_sample("approval.approved", formats.ARDEN)
    event = catalogue.sample_event("approval.approved")
    headers, body = formats.build_request(
        event, formats.ARDEN, [catalogue.SAMPLE_SECRETS[formats.ARDEN]], catalogue.SAMPLE_TIMESTAMP
    )
    assert sample.headers == headers
    assert sample.raw_body == body
    assert json.loads(sample.body) == json.loads(body)
    assert json.loads(body)["event_type"] == "action_approved"


def test_the_catalogue_says_arden_endpoints_get_no_pending_notices(client, vera, org_a):
    sample = catalogue.format_sample("log.pending_approval", formats.ARDEN)
    assert not sample.sent
    login(client, vera)
    page = client.get("/webhooks/events/").content.decode()
    assert "Not sent to Arden endpoints" in page


def test_the_catalogue_shows_a_python_and_a_node_snippet_for_each_format(client, vera, org_a):
    login(client, vera)
    page = client.get("/webhooks/events/").content.decode()
    for fmt in ("standard", "arden", "agentwarden"):
        assert f'id="verify-{fmt}"' in page
    assert page.count("<summary>Python</summary>") == 3
    assert page.count("<summary>Node</summary>") == 3


def test_an_anonymous_visitor_is_sent_to_log_in(client, db):
    response = client.get("/webhooks/events/")
    assert response.status_code == HTTPStatus.FOUND
    assert "/accounts/login/" in response["Location"]


# --- The snippets verify what Warden really signs -----------------------------------------


def signed(fmt: str, secrets: list[str]) -> tuple[dict[str, str], bytes]:
    event = catalogue.sample_event("approval.approved")
    return formats.build_request(event, fmt, secrets, int(time.time()))


@pytest.fixture(params=["standard", "arden", "agentwarden"])
def fmt(request) -> str:
    return request.param


def python_verify(fmt: str):
    namespace: dict = {}
    exec(catalogue.SNIPPETS[fmt]["python"], namespace)  # noqa: S102 - our own snippet
    return namespace["verify"]


def test_the_python_snippet_accepts_a_real_delivery(fmt):
    secret = services.secret_generate(fmt)
    headers, body = signed(fmt, [secret])
    assert python_verify(fmt)(secret, CaseInsensitiveDict(headers), body) is True


def test_the_python_snippet_refuses_a_changed_body(fmt):
    secret = services.secret_generate(fmt)
    headers, body = signed(fmt, [secret])
    tampered = body.replace(b"420", b"9999")
    assert tampered != body
    assert python_verify(fmt)(secret, CaseInsensitiveDict(headers), tampered) is False


def test_the_python_snippet_refuses_another_secret(fmt):
    headers, body = signed(fmt, [services.secret_generate(fmt)])
    other = services.secret_generate(fmt)
    assert python_verify(fmt)(other, CaseInsensitiveDict(headers), body) is False


def test_the_python_snippet_refuses_an_old_timestamp(fmt):
    secret = services.secret_generate(fmt)
    event = catalogue.sample_event("approval.approved")
    headers, body = formats.build_request(event, fmt, [secret], int(time.time()) - 3600)
    assert python_verify(fmt)(secret, CaseInsensitiveDict(headers), body) is False


def test_the_python_standard_snippet_accepts_the_new_secret_during_a_rotation():
    old, new = services.secret_generate("standard"), services.secret_generate("standard")
    headers, body = signed("standard", [new, old])
    verify = python_verify("standard")
    assert verify(new, CaseInsensitiveDict(headers), body) is True
    assert verify(old, CaseInsensitiveDict(headers), body) is True


NODE_HARNESS = """
let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const { secret, headers, body } = JSON.parse(input);
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  process.stdout.write(String(verify(secret, lower, Buffer.from(body, "base64"))));
});
"""


def node_verify(fmt: str, secret: str, headers: dict[str, str], body: bytes, tmp_path) -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("needs node on PATH to run the Node snippet")
    script = tmp_path / f"verify_{fmt}.js"
    script.write_text(catalogue.SNIPPETS[fmt]["node"] + NODE_HARNESS)
    payload = {"secret": secret, "headers": headers, "body": base64.b64encode(body).decode()}
    done = subprocess.run(
        [node, str(script)], input=json.dumps(payload), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_node_snippet_accepts_a_real_delivery_and_refuses_a_changed_one(fmt, tmp_path):
    secret = services.secret_generate(fmt)
    headers, body = signed(fmt, [secret])
    assert node_verify(fmt, secret, headers, body, tmp_path) == "true"
    tampered = body.replace(b"420", b"9999")
    assert node_verify(fmt, secret, headers, tampered, tmp_path) == "false"
