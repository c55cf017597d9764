"""One HTTP write of line protocol to an InfluxDB v2 write API, with the server's answer
turned into a retry decision.

The request is made with :mod:`http.client` on one kept-alive connection rather than through
influxdb-client's generated ``WriteService``: that one rebuilds its URL, query and headers
and sanitizes its arguments on every call, and parsed its way through a few hundred µs of
the sink's thread per write (bench in the README, "InfluxDB sink"). What it did that
matters is kept here: the ``Token`` authorization header, ``org``/``bucket``/``precision``
in the query, gzip, TLS verification on or off, the timeout, no retries of its own (every
failure comes back to the sink), and the same reading of an error answer (JSON
``message``, else the body, else the ``X-Platform-Error-Code``/``X-Influx-Error``/
``X-InfluxDb-Error`` header, else the reason phrase; ``Retry-After``).
"""

from __future__ import annotations

import gzip as _gzip
import http.client
import json
import math
import select
import ssl
import urllib.parse
from typing import Any

from twisted.logger import Logger

from hub import __version__
from plugins.sinks.influx_options import GZIP_LEVEL, PERMANENT_STATUSES, InfluxOptions

_log = Logger(namespace="hub.sinks.influxdb")

#: Failures of a kept-alive connection that the server closed while it sat idle: the
#: request is sent again once on a new connection (a write is idempotent).
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
          ConnectionAbortedError)
_ERROR_HEADERS = ("X-Platform-Error-Code", "X-Influx-Error", "X-InfluxDb-Error")

# ---------------------------------------------------------------------------- the writer


class WriteError(Exception):
    """A write that did not succeed: ``status`` is the HTTP status (``None`` when no answer
    came back), ``message`` the server's message, ``retry_after`` its Retry-After (s)."""

    def __init__(self, status: int | None, message: str,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{status or 'no answer'}: {message}")
        self.status = status
        self.message = message
        self.retry_after = retry_after

    @property
    def permanent(self) -> bool:
        return self.status in PERMANENT_STATUSES


class InfluxWriter:
    """The blocking half, run in the sink's thread: one ``POST /api/v2/write`` per call on
    a kept-alive connection, no retries of its own. Not thread-safe (one sink thread)."""

    def __init__(self, opts: InfluxOptions) -> None:
        self._opts = opts
        parts = urllib.parse.urlsplit(opts.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        query = urllib.parse.urlencode({"org": opts.org, "bucket": opts.bucket,
                                        "precision": "ns"})
        self._target = f"{parts.path.rstrip('/')}/api/v2/write?{query}"
        headers = {"Content-Type": "text/plain; charset=utf-8",
                   "Accept": "application/json", "User-Agent": f"hub/{__version__}"}
        if opts.token:
            headers["Authorization"] = f"Token {opts.token}"
        if opts.gzip:
            headers["Content-Encoding"] = "gzip"
        self._headers = headers
        self._context: ssl.SSLContext | None = None
        if self._https:
            self._context = ssl.create_default_context()
            if not opts.verify_ssl:
                self._context.check_hostname = False
                self._context.verify_mode = ssl.CERT_NONE
        self._conn: http.client.HTTPConnection | None = None

    def write(self, body: bytes) -> None:
        """Send ``body`` (line protocol); raise :class:`WriteError` unless it was accepted."""
        if self._opts.gzip:
            body = _gzip.compress(body, GZIP_LEVEL)
        reused = self._conn is not None and not self._closed_by_peer()
        try:
            try:
                status, reason, headers, data = self._post(body)
            except _STALE:
                if not reused:
                    raise
                self.close()
                status, reason, headers, data = self._post(body)
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise WriteError(None, f"{type(e).__name__}: {e}"[:2000]) from None
        if 200 <= status < 300:
            return
        raise WriteError(status, _message(data, headers, reason)[:2000],
                         _retry_after(headers.get("Retry-After")))

    def _post(self, body: bytes) -> tuple[int, str, http.client.HTTPMessage, bytes]:
        conn = self._conn
        if conn is None:
            conn = self._conn = self._connect()
        conn.request("POST", self._target, body, self._headers)
        response = conn.getresponse()
        data = response.read()  # all of it, or the connection cannot carry the next one
        return response.status, response.reason, response.headers, data

    def _connect(self) -> http.client.HTTPConnection:
        timeout = self._opts.timeout
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout,
                                               context=self._context)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _closed_by_peer(self) -> bool:
        """The idle connection became readable: the server closed it (or wrote something
        unasked); start a new one instead of failing a write on it."""
        sock = getattr(self._conn, "sock", None)
        if sock is None:
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            readable = True
        if readable:
            self.close()
            return True
        return False

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _message(data: bytes, headers: Any, reason: str) -> str:
    """The server's message, read as influxdb-client reads it."""
    if data:
        text = data.decode("utf-8", "replace")
        try:
            message = json.loads(text)["message"]
        except Exception:
            return text
        return str(message) if message else reason or ""
    for name in _ERROR_HEADERS:
        value = headers.get(name)
        if value is not None:
            return str(value)
    return reason or ""


def _retry_after(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None  # absent, or an HTTP date: our own backoff applies
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
