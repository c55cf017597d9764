"""One HTTP write of line protocol to an InfluxDB v2 write API, through influxdb-client,
with the server's answer turned into a retry decision."""

from __future__ import annotations

import gzip as _gzip
import math
from typing import Any

from twisted.logger import Logger

from plugins.sinks.influx_options import GZIP_LEVEL, PERMANENT_STATUSES, InfluxOptions

_log = Logger(namespace="hub.sinks.influxdb")

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
    """The blocking half, run in the sink's thread: one ``POST /api/v2/write`` per call
    through influxdb-client, no retries of its own."""

    def __init__(self, opts: InfluxOptions) -> None:
        from influxdb_client import InfluxDBClient
        from influxdb_client.service.write_service import WriteService

        self._opts = opts
        self._client = InfluxDBClient(
            url=opts.url, token=opts.token or None, org=opts.org,
            timeout=int(opts.timeout * 1000), enable_gzip=False, verify_ssl=opts.verify_ssl,
            retries=False)
        self._service = WriteService(self._client.api_client)

    def write(self, body: bytes) -> None:
        """Send ``body`` (line protocol); raise :class:`WriteError` unless it was accepted."""
        import urllib3
        from influxdb_client.rest import ApiException

        extra: dict[str, str] = {}
        if self._opts.gzip:
            body = _gzip.compress(body, GZIP_LEVEL)
            extra["content_encoding"] = "gzip"
        try:
            self._service.post_write(
                org=self._opts.org, bucket=self._opts.bucket, body=body, precision="ns",
                content_type="text/plain; charset=utf-8", **extra)
        except ApiException as e:
            message = getattr(e, "message", None) or e.reason or ""
            if isinstance(message, bytes):
                message = message.decode("utf-8", "replace")
            raise WriteError(e.status, str(message)[:2000],
                             _retry_after(getattr(e, "retry_after", None))) from None
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise WriteError(None, f"{type(e).__name__}: {e}"[:2000]) from None

    def close(self) -> None:
        self._client.close()


def _retry_after(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None  # absent, or an HTTP date: our own backoff applies
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
