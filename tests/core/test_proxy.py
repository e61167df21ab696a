"""The TLS proxy's configuration (deploy/nginx/warden.conf) and the check server's unit
(deploy/systemd/warden-check.service): the agents' checks go to a gunicorn of their own,
everything else to the web server and the MCP gateway, through a real nginx."""

from __future__ import annotations

import http.client
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from agents.http import KeyOnlyPostView
from tests.live import WebhookReceiver, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
NGINX_CONF = ROOT / "deploy" / "nginx" / "warden.conf"
UNITS = ROOT / "deploy" / "systemd"


def check_endpoint_paths() -> set[str]:
    """The URL paths of the agents' check endpoints (the views served as ``KeyOnlyPostView``:
    the one call an agent makes per tool call), read from the URLconf."""
    found: set[str] = set()

    def walk(patterns: list, prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern):
                view = getattr(pattern.callback, "view_class", None)
                if view is not None and issubclass(view, KeyOnlyPostView):
                    found.add("/" + route)

    walk(get_resolver().url_patterns, "")
    return found


def conf_locations() -> dict[str, str]:
    """``location = PATH`` blocks of the configuration and the upstream each passes to."""
    text = NGINX_CONF.read_text()
    return dict(re.findall(r"location = (\S+) \{\s*proxy_pass http://(\w+);", text))


def upstreams() -> dict[str, list[str]]:
    text = NGINX_CONF.read_text()
    return {
        name: re.findall(r"server (\S+);", body)
        for name, body in re.findall(r"upstream (\w+) \{(.*?)\}", text, re.S)
    }


def unit_environment(unit: str) -> dict[str, str]:
    """The defaults a unit sets with ``Environment=`` lines."""
    values: dict[str, str] = {}
    for line in (UNITS / unit).read_text().splitlines():
        if line.startswith("Environment="):
            for item in shlex.split(line.split("=", 1)[1]):
                name, _, value = item.partition("=")
                values[name] = value
    return values


def unit_exec_start(unit: str) -> list[str]:
    text = (UNITS / unit).read_text().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    return shlex.split(line.split("=", 1)[1])


def test_the_proxy_sends_every_check_endpoint_and_nothing_else_to_the_check_server():
    paths = check_endpoint_paths()
    assert {"/api/v1/check", "/policy/check", "/sdk/check", "/sdk/log"} <= paths
    assert conf_locations() == dict.fromkeys(paths, "warden_check")


def test_the_proxy_upstreams_are_the_units_default_addresses():
    check = unit_environment("warden-check.service")
    mcp = unit_environment("warden-mcp.service")
    web = unit_environment("warden-web.service")
    assert "PORT" not in web and "HOST" not in web  # gunicorn.conf.py's 127.0.0.1:8000
    assert upstreams() == {
        "warden_web": ["127.0.0.1:8000"],
        "warden_check": [check["CHECK_BIND"]],
        "warden_mcp": [f"{mcp['MCP_HOST']}:{mcp['MCP_PORT']}"],
    }
    # Three processes, three ports.
    assert len({"127.0.0.1:8000", check["CHECK_BIND"], f"{mcp['MCP_HOST']}:{mcp['MCP_PORT']}"}) == 3


def test_gunicorn_accepts_the_check_servers_command_line():
    """The unit's ExecStart, its variables at their defaults and the paths at this checkout,
    is a configuration gunicorn accepts and an application it can load, and its options win
    over gunicorn.conf.py's (which binds HOST:PORT, the web server's address)."""
    defaults = unit_environment("warden-check.service")
    command = [
        re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], part).replace(
            "/opt/warden", str(ROOT)
        )
        for part in unit_exec_start("warden-check.service")
    ]
    assert command[0] == str(ROOT / ".venv" / "bin" / "gunicorn")
    command[0] = str(Path(sys.executable).parent / "gunicorn")
    assert "--bind" in command and defaults["CHECK_BIND"] in command
    environment = {**os.environ, "DEBUG": "true", "PORT": "8000", "WEB_CONCURRENCY": "4"}

    def gunicorn(option: str) -> str:
        done = subprocess.run(
            [*command, option],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    gunicorn("--check-config")
    printed = gunicorn("--print-config")
    effective = dict(re.findall(r"^(bind|workers|threads) += (.*)$", printed, re.M))
    assert effective == {
        "bind": repr([defaults["CHECK_BIND"]]),
        "workers": defaults["CHECK_CONCURRENCY"],
        "threads": defaults["CHECK_THREADS"],
    }, printed


# --- Through a real nginx -------------------------------------------------------------------


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx",) if os.access(path, os.X_OK)), None
    )


@pytest.fixture
def proxy(tmp_path) -> Iterator[tuple[int, dict[str, WebhookReceiver]]]:
    """The shipped configuration served by nginx on a free port, plain HTTP (its TLS lines
    and the redirecting server taken out), its upstreams pointed at three recording HTTP
    servers standing in for the web server, the check server and the MCP gateway."""
    binary = nginx_binary()
    if binary is None:
        pytest.skip("needs nginx (Debian's nginx package; .ci/run installs it)")
    backends = {name: WebhookReceiver() for name in ("warden_web", "warden_check", "warden_mcp")}
    for backend in backends.values():
        backend.start()
    port = free_port()
    text = NGINX_CONF.read_text()
    text = re.sub(r"server \{\s*listen 80;.*?\n\}\n", "", text, count=1, flags=re.S)
    text = re.sub(r"\s*listen \[::\]:443 ssl http2;", "", text)
    text = text.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{port};")
    text = re.sub(r"\s*ssl_certificate(_key)? \S+;", "", text)
    for name, backend in backends.items():
        text = re.sub(
            rf"(upstream {name} \{{[^}}]*?server )\S+;", rf"\g<1>127.0.0.1:{backend.port};", text
        )
    assert "ssl" not in text and "listen 80" not in text
    (tmp_path / "warden.conf").write_text(text)
    (tmp_path / "logs").mkdir()
    (tmp_path / "nginx.conf").write_text(
        f"worker_processes 1;\nerror_log {tmp_path}/logs/error.log warn;\n"
        f"pid {tmp_path}/nginx.pid;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {tmp_path}/body;\n"
        f"  proxy_temp_path {tmp_path}/proxy;\n  include {tmp_path}/warden.conf;\n}}\n"
    )
    command = [binary, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")]
    tested = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
    assert tested.returncode == 0, tested.stderr
    process = subprocess.Popen(
        [*command, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:

        def listening() -> bool:
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
            except OSError:
                return False
            return True

        wait_until(listening, timeout=15)
        yield port, backends
    finally:
        process.terminate()
        process.wait(timeout=15)
        for backend in backends.values():
            backend.stop()


def served_by(
    proxy: tuple[int, dict[str, WebhookReceiver]],
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
) -> str:
    """Send one request through nginx; the name of the upstream that received it."""
    port, backends = proxy
    before = {name: len(backend.received()) for name, backend in backends.items()}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = "{}" if method == "POST" else None
    connection.request(method, path, body=body, headers={"Host": "warden.test", **(headers or {})})
    answer = connection.getresponse()
    answer.read()
    assert answer.status == 200, (path, answer.status)
    (name,) = [name for name, backend in backends.items() if len(backend.received()) > before[name]]
    return name


def test_nginx_routes_the_checks_to_the_check_server_and_the_rest_to_their_processes(proxy):
    _, backends = proxy
    for path in sorted(check_endpoint_paths()):
        assert served_by(proxy, "POST", path) == "warden_check", path
    for method, path in [
        ("GET", "/"),
        ("GET", "/api/v1/approvals"),
        ("POST", "/api/v1/approvals/apr_1/approve"),
        ("GET", "/api/v1/actions/act_1"),
        ("GET", "/status/act_1"),
        ("POST", "/api/v1/check/"),  # exact matches only: anything else is the web server's
        ("POST", "/api/v1/checks"),
        ("GET", "/healthz"),
    ]:
        assert served_by(proxy, method, path) == "warden_web", path
    assert served_by(proxy, "POST", "/api/v1/check?trace=1") == "warden_check"  # a query string
    assert served_by(proxy, "POST", "/mcp/files") == "warden_mcp"
    # Each request reached its process once, with its method, path and query unchanged.
    assert [(seen.method, seen.path) for seen in backends["warden_check"].received()] == [
        *[("POST", path) for path in sorted(check_endpoint_paths())],
        ("POST", "/api/v1/check?trace=1"),
    ]
    assert len(backends["warden_web"].received()) == 8


def test_nginx_tells_each_process_the_host_scheme_and_client_address_it_saw(proxy):
    _, backends = proxy
    served_by(proxy, "POST", "/api/v1/check", {"X-Forwarded-For": "6.6.6.6"})
    served_by(proxy, "GET", "/dashboard/", {"X-Forwarded-Proto": "https"})
    (check,) = backends["warden_check"].received()
    (page,) = backends["warden_web"].received()
    for seen in (check, page):
        # The client's own X-Forwarded-For and X-Forwarded-Proto are replaced, not passed on.
        forwarded = [
            seen.headers.get(name) for name in ("Host", "X-Forwarded-Proto", "X-Forwarded-For")
        ]
        assert forwarded == ["warden.test", "http", "127.0.0.1"]
    assert (check.method, check.path) == ("POST", "/api/v1/check")
