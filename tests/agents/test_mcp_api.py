"""Registered MCP servers: /api/v1/mcp/servers and `manage.py warden_mcp add`."""

from __future__ import annotations

from http import HTTPStatus

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from agents.mcp.models import McpServer
from agents.mcp.services import mcp_server_upstream_headers

pytestmark = pytest.mark.django_db

URL = "/api/v1/mcp/servers"


def _create(client, **body):
    return client.post(
        URL,
        {"name": "files", "url": "http://127.0.0.1:9/mcp", **body},
        content_type="application/json",
    )


def test_an_owner_registers_a_server_and_its_headers_are_never_shown(client, alice, support_bot):
    client.force_login(alice)
    response = _create(
        client,
        headers={"Authorization": "Bearer upstream-secret"},
        agents=["support-bot"],
        hold="return_pending",
    )
    assert response.status_code == HTTPStatus.CREATED, response.json()
    body = response.json()
    assert body["name"] == "files"
    assert body["hold"] == "return_pending"
    assert body["has_headers"] is True
    assert body["agents"] == [support_bot.public_id]
    assert "upstream-secret" not in response.content.decode()
    server = McpServer.objects.get(public_id=body["id"])
    assert "upstream-secret" not in server.headers  # encrypted at rest
    assert mcp_server_upstream_headers(server) == {"Authorization": "Bearer upstream-secret"}
    listed = client.get(URL).json()["results"]
    assert [s["id"] for s in listed] == [body["id"]]
    assert "upstream-secret" not in client.get(f"{URL}/{body['id']}").content.decode()


def test_hold_defaults_to_wait(client, alice, org_a):
    client.force_login(alice)
    assert _create(client).json()["hold"] == "wait"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Not A Slug"}, "name"),
        ({"url": "ftp://example.com/mcp"}, "url"),
        ({"hold": "forever"}, "hold"),
        ({"headers": {"Bad Name": "x"}}, "headers"),
        ({"headers": {"X-Ok": "a\r\nb"}}, "headers"),
        ({"headers": "Authorization: x"}, "headers"),
        ({"headers": {"Host": "evil"}}, "headers"),
        ({"agents": ["nobody"]}, "agents"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(client, alice, org_a, body, field):
    client.force_login(alice)
    response = _create(client, **body)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == field


def test_a_private_upstream_is_refused_by_the_ssrf_guard(client, alice, org_a, settings):
    settings.WARDEN_WEBHOOKS_ALLOW_PRIVATE = False
    client.force_login(alice)
    response = _create(client, url="http://127.0.0.1:9/mcp")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == "url"


def test_a_duplicate_name_is_a_conflict(client, alice, org_a):
    client.force_login(alice)
    assert _create(client).status_code == HTTPStatus.CREATED
    response = _create(client)
    assert response.status_code == HTTPStatus.CONFLICT
    assert response.json()["field"] == "name"


def test_an_owner_updates_and_deletes_a_server(client, alice, org_a):
    client.force_login(alice)
    server_id = _create(client).json()["id"]
    response = client.patch(
        f"{URL}/{server_id}",
        {"hold": "return_pending", "timeout_seconds": 5, "headers": {"X-Token": "t"}},
        content_type="application/json",
    )
    assert response.status_code == HTTPStatus.OK, response.json()
    assert response.json()["hold"] == "return_pending"
    assert response.json()["timeout_seconds"] == 5
    assert response.json()["has_headers"] is True
    assert client.delete(f"{URL}/{server_id}").status_code == HTTPStatus.NO_CONTENT
    assert client.get(f"{URL}/{server_id}").status_code == HTTPStatus.NOT_FOUND


def test_a_viewer_reads_but_cannot_register(client, vera, org_a):
    client.force_login(vera)
    assert client.get(URL).status_code == HTTPStatus.OK
    assert _create(client).status_code == HTTPStatus.FORBIDDEN


def test_an_outsider_gets_404_for_another_orgs_server(client, alice, charlie, org_a, org_c):
    client.force_login(alice)
    server_id = _create(client).json()["id"]
    client.force_login(charlie)
    assert client.get(f"{URL}/{server_id}").status_code == HTTPStatus.NOT_FOUND
    assert (
        client.patch(
            f"{URL}/{server_id}", {"hold": "wait"}, content_type="application/json"
        ).status_code
        == HTTPStatus.NOT_FOUND
    )
    assert client.delete(f"{URL}/{server_id}").status_code == HTTPStatus.NOT_FOUND
    assert client.get(URL).json()["results"] == []


def test_an_api_key_cannot_manage_servers(client, keys):
    response = client.get(URL, HTTP_X_API_KEY=keys.test)
    assert response.status_code == HTTPStatus.FORBIDDEN


def test_the_command_registers_a_server_with_an_encrypted_header(org_a, support_bot, capsys):
    call_command(
        "warden_mcp",
        "add",
        "--org",
        org_a.public_id,
        "--name",
        "github",
        "--url",
        "http://127.0.0.1:9/mcp",
        "--header",
        "Authorization: Bearer ghp_secret",
        "--agent",
        "support-bot",
    )
    out = capsys.readouterr().out
    assert "github" in out and "ghp_secret" not in out
    server = McpServer.objects.get(organization=org_a, name="github")
    assert mcp_server_upstream_headers(server) == {"Authorization": "Bearer ghp_secret"}
    assert list(server.agents.all()) == [support_bot]


def test_the_command_refuses_a_malformed_header(org_a):
    with pytest.raises(CommandError, match="Name: value"):
        call_command(
            "warden_mcp",
            "add",
            "--org",
            org_a.public_id,
            "--name",
            "x",
            "--url",
            "http://127.0.0.1:9/mcp",
            "--header",
            "no colon",
        )


def test_reencrypt_rewrites_headers_under_the_new_secret_key(org_a, settings, capsys):
    from agents.mcp.services import mcp_server_create

    settings.SECRET_KEY = "old-key-" + "x" * 40
    server = mcp_server_create(
        organization=org_a,
        actor=None,
        name="gh",
        url="http://127.0.0.1:9/mcp",
        headers={"X-T": "v"},
    )
    before = McpServer.objects.get(pk=server.pk).headers
    settings.SECRET_KEY = "new-key-" + "y" * 40
    settings.SECRET_KEY_FALLBACKS = ["old-key-" + "x" * 40]
    call_command("warden_mcp", "reencrypt")
    assert "1 MCP servers" in capsys.readouterr().out
    settings.SECRET_KEY_FALLBACKS = []
    server.refresh_from_db()
    assert server.headers != before
    assert mcp_server_upstream_headers(server) == {"X-T": "v"}


# --- The dashboard page ------------------------------------------------------------------


def test_the_dashboard_registers_lists_and_removes_a_server(client, alice, support_bot):
    client.force_login(alice)
    response = client.post(
        "/mcp-servers/",
        {
            "name": "files",
            "url": "http://127.0.0.1:9/mcp",
            "headers": "Authorization: Bearer dash-secret\nX-Team: a",
            "agents": [support_bot.public_id],
            "hold": "return_pending",
        },
    )
    assert response.status_code == HTTPStatus.FOUND
    server = McpServer.objects.get(name="files")
    assert mcp_server_upstream_headers(server) == {
        "Authorization": "Bearer dash-secret",
        "X-Team": "a",
    }
    page = client.get("/mcp-servers/").content.decode()
    assert "files" in page and "set (hidden)" in page and "dash-secret" not in page
    assert client.post(f"/mcp-servers/{server.public_id}/delete/").status_code == HTTPStatus.FOUND
    assert not McpServer.objects.exists()


def test_the_dashboard_shows_a_bad_url_and_never_echoes_headers(client, alice, org_a):
    client.force_login(alice)
    response = client.post(
        "/mcp-servers/",
        {"name": "files", "url": "ftp://x", "headers": "Authorization: Bearer s3cr3t"},
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "https://" in response.content.decode()
    assert "s3cr3t" not in response.content.decode()


def test_a_viewer_sees_the_page_but_cannot_register(client, vera, org_a):
    client.force_login(vera)
    page = client.get("/mcp-servers/")
    assert page.status_code == HTTPStatus.OK and "Register a server" not in page.content.decode()
    response = client.post("/mcp-servers/", {"name": "files", "url": "http://127.0.0.1:9/mcp"})
    assert response.status_code == HTTPStatus.FOUND
    assert not McpServer.objects.exists()


def test_an_outsider_gets_404_removing_another_orgs_server(client, alice, charlie, org_a, org_c):
    client.force_login(alice)
    server_id = _create(client).json()["id"]
    client.force_login(charlie)
    response = client.post(f"/mcp-servers/{server_id}/delete/")
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert McpServer.objects.filter(public_id=server_id).exists()
