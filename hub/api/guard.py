"""An ASGI middleware in front of every route: bad bodies are refused with a clear 4xx before
any route sees them, every response carries the security headers, and every request's latency
is counted.

Bodies are read here in full (up to ``max_body``): one that is larger (by its Content-Length
or as it streams in) is refused with 413; a JSON body that is not UTF-8 gets 400, one nested
deeper than ``MAX_DEPTH`` gets 400 too (Python's parser would recurse until RecursionError).
The ``streamed`` routes (method, path) get their body unread: they bound it themselves (a
firmware image streams to disk within its own limit).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_DEPTH = 32
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: an oversized body is read and dropped up to this size before the 413 goes out, so that
#: the client (still sending) reads the answer instead of a connection reset
DRAIN_LIMIT = 16 * 1024 * 1024

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
     b"frame-ancestors 'none'"),
    (b"cache-control", b"no-store"),
]


class BadBody(Exception):
    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail


def json_depth(body: bytes) -> int:
    """Deepest nesting of arrays and objects in a JSON text, strings skipped; no parsing."""
    depth = deepest = 0
    in_string = escaped = False
    for c in body:
        if in_string:
            if escaped:
                escaped = False
            elif c == 0x5C:  # backslash
                escaped = True
            elif c == 0x22:
                in_string = False
        elif c == 0x22:
            in_string = True
        elif c in (0x5B, 0x7B):
            depth += 1
            if depth > deepest:
                deepest = depth
        elif c in (0x5D, 0x7D):
            depth -= 1
    return deepest


class Guard:
    def __init__(self, app: ASGIApp, max_body: int,
                 observe: Callable[[str, str, int, float], None] | None = None,
                 hsts: bool = False, changed: Callable[[], None] | None = None,
                 streamed: frozenset[tuple[str, str]] = frozenset()) -> None:
        self.app = app
        self.streamed = streamed
        self.changed = changed
        self.max_body = max_body
        self.observe = observe
        self.headers = list(SECURITY_HEADERS)
        if hsts:
            self.headers.append((b"strict-transport-security", b"max-age=31536000"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    h for h in self.headers if h[0] not in names]
            await send(message)

        try:
            if (scope.get("method"), scope.get("path")) in self.streamed:
                await self.app(scope, receive, send_with_headers)
                return
            try:
                body = await self._read_body(scope, receive)
            except BadBody as e:
                await self._refuse(send_with_headers, e.status, e.detail)
                return
            sent = False

            async def replay() -> Message:
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send_with_headers)
        finally:
            if self.changed is not None and scope.get("method") not in SAFE_METHODS:
                self.changed()  # it may have changed who a token is (a cached caller)
            if self.observe is not None:
                route = scope.get("route")
                path = getattr(route, "path", None) or "unmatched"
                self.observe(scope.get("method", ""), path, status[0],
                             time.perf_counter() - started)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        too_big = BadBody(413, f"request body larger than {self.max_body} bytes")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                raise BadBody(400, "bad Content-Length") from None
            if declared > self.max_body:
                if declared <= DRAIN_LIMIT:
                    await self._drain(receive, DRAIN_LIMIT)
                raise too_big
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise BadBody(400, "client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                if message.get("more_body", False):
                    await self._drain(receive, DRAIN_LIMIT - size)
                raise too_big
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and b"json" in headers.get(b"content-type", b"").lower():
            try:
                body.decode("utf-8")
            except UnicodeDecodeError:
                raise BadBody(400, "the request body is not UTF-8") from None
            if json_depth(body) > MAX_DEPTH:
                raise BadBody(400, f"JSON nested deeper than {MAX_DEPTH} levels")
        return body

    @staticmethod
    async def _drain(receive: Receive, limit: int) -> None:
        size = 0
        while size <= limit:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    @staticmethod
    async def _refuse(send: Send, status: int, detail: str) -> None:
        payload = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})
