"""SSRF-safe HTTP POST of one webhook request.

The host is resolved once; every resolved address is checked against the refused ranges
(unless ``WARDEN_WEBHOOKS_ALLOW_PRIVATE``) and the connection goes to the checked address,
with the Host header and TLS SNI/certificate check set to the hostname, so DNS cannot
change between the check and the connect. Redirects are never followed. The total time is
bounded by reading the response in chunks against a deadline.

``post`` never raises: a ``SendResult`` says what happened and whether a failure is
permanent (no retry can help) or transient.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import certifi
import urllib3

from webhooks import conf

MAX_RESPONSE_BYTES = 20 * 1024
# Said to members (attempt log, API errors): never the resolved address, which would turn
# webhooks into a probe of the server's own network. The server log has the details.
ADDRESS_NOT_ALLOWED = (
    "The URL's host resolves to an address that is not allowed "
    "(private, loopback, link-local or otherwise not public)."
)

# Said when an endpoint is saved (not in the attempt log): the switch exists, for operators.
ALLOW_PRIVATE_HINT = (
    "The operator can allow such addresses with the WARDEN_WEBHOOKS_ALLOW_PRIVATE setting "
    "(labs and tests only)."
)

logger = logging.getLogger(__name__)

_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
_SHARED = ipaddress.ip_network("100.64.0.0/10")


@dataclass
class SendResult:
    status_code: int | None = None
    response_body: str = ""
    duration_ms: int = 0
    error: str = ""
    permanent: bool = False
    retry_after: float | None = None
    response_headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.error and self.status_code is not None and 200 <= self.status_code < 300


class AddressRefused(Exception):
    """The URL resolves to an address webhooks may not reach."""


def address_refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``ip`` is refused, or None if it is a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return address_refusal(ip.ipv4_mapped)
    if ip in _METADATA:
        return "cloud metadata address"
    checks = [
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("shared address space", isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED),
        ("multicast", ip.is_multicast),
        ("unspecified", ip.is_unspecified),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        ("not globally routable", not ip.is_global),
    ]
    return next((name for name, hit in checks if hit), None)


def url_problem(url: str, *, allow_http: bool | None = None) -> str | None:
    """A human reason why ``url`` is not an acceptable webhook URL, or None."""
    allow_http = conf.allow_http() if allow_http is None else allow_http
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        return "The URL is malformed."
    if parts.scheme not in {"https", "http"}:
        return "The URL must start with https://."
    if parts.scheme == "http" and not allow_http:
        return (
            "The URL must use https:// (plain http is not allowed on this server; the "
            "operator can allow it with the WARDEN_WEBHOOKS_ALLOW_HTTP setting, for labs "
            "and tests only)."
        )
    if not parts.hostname:
        return "The URL has no host."
    if parts.username or parts.password:
        return "The URL must not carry credentials."
    return None


def resolve_checked(host: str, port: int, *, allow_private: bool | None = None) -> str:
    """Resolve ``host`` once and return the address to connect to; refuse forbidden ones."""
    allow_private = conf.allow_private() if allow_private is None else allow_private
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = []
    for info in infos:
        address = info[4][0].split("%", 1)[0]
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise OSError(f"{host} did not resolve")
    if not allow_private:
        for address in addresses:
            reason = address_refusal(ipaddress.ip_address(address))
            if reason:
                logger.warning(
                    "webhook host %s resolves to %s (%s): refused", host, address, reason
                )
                raise AddressRefused(ADDRESS_NOT_ALLOWED)
    return addresses[0]


def url_address_problem(url: str) -> str | None:
    """Why ``url`` (already syntactically valid) may not be used for its address, or None.

    Checked when an endpoint is created or its URL changed; delivery checks again on every
    attempt (DNS can change in between).
    """
    if conf.allow_private():
        return None
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        resolve_checked(parts.hostname or "", port, allow_private=False)
    except AddressRefused as exc:
        return f"{exc} {ALLOW_PRIVATE_HINT}"
    except (OSError, UnicodeError):
        return "The URL's host does not resolve."
    return None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def post(url: str, headers: dict[str, str], body: bytes) -> SendResult:
    started = time.monotonic()
    deadline = started + conf.total_timeout()
    result = SendResult()

    def finish() -> SendResult:
        result.duration_ms = int((time.monotonic() - started) * 1000)
        return result

    problem = url_problem(url)
    if problem:
        result.error, result.permanent = problem, True
        return finish()
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        address = resolve_checked(host, port)
    except AddressRefused as exc:
        result.error, result.permanent = str(exc), True
        return finish()
    except OSError as exc:
        result.error = f"DNS resolution failed: {exc}"
        return finish()

    default_port = (parts.scheme == "https" and port == 443) or (
        parts.scheme == "http" and port == 80
    )
    host_header = host if default_port else f"{host}:{port}"
    if ":" in host and not host.startswith("["):
        host_header = f"[{host}]" if default_port else f"[{host}]:{port}"
    timeout = urllib3.Timeout(total=conf.total_timeout(), connect=conf.connect_timeout())
    pool_kwargs: dict = {"timeout": timeout, "retries": False, "maxsize": 1}
    if parts.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            address,
            port,
            server_hostname=host,
            assert_hostname=host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
            **pool_kwargs,
        )
    else:
        pool = urllib3.HTTPConnectionPool(address, port, **pool_kwargs)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        response = pool.urlopen(
            "POST",
            path,
            body=body,
            headers={**headers, "Host": host_header},
            redirect=False,
            preload_content=False,
            assert_same_host=False,
        )
        result.status_code = response.status
        result.response_headers = {k.lower(): v for k, v in response.headers.items()}
        chunks: list[bytes] = []
        size = 0
        while size < MAX_RESPONSE_BYTES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("total timeout while reading the response")
            sock = getattr(getattr(response, "connection", None), "sock", None)
            if sock is not None:  # each read may only use what is left of the total time
                sock.settimeout(remaining)
            chunk = response.read(min(4096, MAX_RESPONSE_BYTES - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        response.release_conn()
        result.response_body = b"".join(chunks)[:MAX_RESPONSE_BYTES].decode(
            "utf-8", errors="replace"
        )
    except urllib3.exceptions.NewConnectionError as exc:  # a TimeoutError subclass in urllib3
        result.error = f"connection error: {exc}"
    except (TimeoutError, urllib3.exceptions.TimeoutError) as exc:
        result.error = f"timeout: {exc}"
    except urllib3.exceptions.HTTPError as exc:
        result.error = f"connection error: {exc}"
    except OSError as exc:
        result.error = f"connection error: {exc}"
    finally:
        pool.close()
    if result.status_code is not None and not result.error:
        if result.status_code == 410:
            result.permanent = True
            result.error = "410 Gone: the receiver asked to stop"
        elif result.status_code in (429, 503):
            result.retry_after = _retry_after(result.response_headers.get("retry-after"))
        if not result.ok and not result.error:
            result.error = f"HTTP {result.status_code}"
    return finish()
