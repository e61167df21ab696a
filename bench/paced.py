"""Open-loop load at a fixed rate, with latency measured from each request's scheduled time.

A closed-loop client (wrk, or connections that pause between requests) slows down when the
server does, and so hides queueing ("coordinated omission"). Here request n is due at
start + n / rate whatever happened before; its latency runs from that due time to the last
byte of the answer. Raw HTTP/1.1 keep-alive connections on asyncio; a request that finds
no idle connection opens one.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class PacedResult:
    rate: float
    sent: int
    ok: int
    errors: int
    latencies_ms: list[float] = field(default_factory=list)
    dues: list[float] = field(default_factory=list)  # perf_counter due time of each latency
    error_kinds: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1

    def percentile(self, pct: float, since: float = 0.0, until: float = float("inf")) -> float:
        """Of the requests due within [since, until) (perf_counter times), or all of them."""
        values = sorted(
            latency
            for latency, due in zip(self.latencies_ms, self.dues, strict=True)
            if since <= due < until
        )
        if not values:
            return 0.0
        index = min(len(values) - 1, round(pct / 100 * (len(values) - 1)))
        return values[index]


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def roundtrip(self, request: bytes) -> int:
        self.writer.write(request)
        await self.writer.drain()
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        await self.reader.readexactly(length)
        return status


async def _run(
    host: str, port: int, request: bytes, rate: float, seconds: float, warmup: float
) -> PacedResult:
    idle: list[_Connection] = []
    result = PacedResult(rate=rate, sent=0, ok=0, errors=0)
    start = time.perf_counter() + 0.1
    total = int((seconds + warmup) * rate)

    async def one(due: float, record: bool) -> None:
        connection = idle.pop() if idle else _Connection(*await asyncio.open_connection(host, port))
        try:
            status = await connection.roundtrip(request)
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
            connection.writer.close()
            if record:
                result.error(type(exc).__name__)
            return
        idle.append(connection)
        if record:
            result.latencies_ms.append((time.perf_counter() - due) * 1000)
            result.dues.append(due)
            if 200 <= status < 300:
                result.ok += 1
            else:
                result.error(f"HTTP {status}")

    tasks = []
    for n in range(total):
        due = start + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        record = n >= warmup * rate
        result.sent += record
        tasks.append(asyncio.create_task(one(due, record)))
    await asyncio.gather(*tasks)
    for connection in idle:
        connection.writer.close()
    return result


def paced_load(
    host: str,
    port: int,
    path: str,
    body: bytes,
    headers: dict[str, str],
    *,
    rate: float,
    seconds: float,
    warmup: float = 2.0,
) -> PacedResult:
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{head}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    return asyncio.run(_run(host, port, request, rate, seconds, warmup))
