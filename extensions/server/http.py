"""Small ASGI helpers: read a bounded body, send JSON, bytes or an event stream, watch for
a client that goes away, and canonical paths."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_SLASHES = re.compile(r"/{2,}")


def canonical(path: str) -> str:
    """How routes are matched: lower case, repeated slashes collapsed, no trailing slash
    (so ``/Metrics/``, ``//metrics`` and ``/metrics`` are one route)."""
    path = _SLASHES.sub("/", path.lower())
    return path.rstrip("/") or "/"


def request_headers(scope: Scope) -> dict[str, str]:
    """Header names lower-cased; a repeated header keeps its first value."""
    out: dict[str, str] = {}
    for name, value in scope.get("headers") or []:
        out.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return out


class BodyTooLarge(Exception):
    """The body went past the limit (whatever its framing)."""


class ClientDisconnected(Exception):
    """The client went away while the body was being read."""


async def read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def limited_receive(receive: Receive, limit: int, on_exceeded: Callable[[], None]) -> Receive:
    """``receive`` for an app that reads the body itself: past ``limit`` bytes it sees a
    disconnect (and ``on_exceeded`` runs), so a chunked body cannot exceed the limit."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                on_exceeded()
                return {"type": "http.disconnect"}
        return message

    return wrapped


def _header_list(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1", "replace")) for k, v in headers.items()]


async def send_bytes(
    send: Send,
    status: int,
    payload: bytes,
    content_type: str,
    headers: Mapping[str, str] | None = None,
) -> None:
    head = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(payload)).encode()),
    ]
    head += _header_list(headers or {})
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": payload})


async def send_json(
    send: Send, status: int, body: Any, headers: Mapping[str, str] | None = None
) -> None:
    await send_bytes(send, status, orjson.dumps(body), "application/json", headers)


async def start_stream(send: Send, headers: Mapping[str, str]) -> None:
    head = [
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no"),
    ]
    head += _header_list(headers)
    await send({"type": "http.response.start", "status": 200, "headers": head})


async def send_events(send: Send, events: list[bytes]) -> None:
    if events:
        await send({"type": "http.response.body", "body": b"".join(events), "more_body": True})


async def end_stream(send: Send) -> None:
    await send({"type": "http.response.body", "body": b""})


async def until_disconnect(receive: Receive) -> None:
    """Returns when the client has gone away (or the response is over)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def unless_disconnected(receive: Receive, work: Awaitable[Any]) -> tuple[bool, Any]:
    """Run ``work`` while watching the connection: ``(True, None)`` if the client went away
    first (``work`` is cancelled), else ``(False, work's result)``."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(until_disconnect(receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        return False, task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):  # abandoned with the client
        await task
    return True, None
