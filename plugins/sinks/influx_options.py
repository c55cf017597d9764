"""Options of the ``influxdb`` sink, checked with the configuration."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger

from hub.config import Secret
from hub.validate import Invalid, Section, boolean, describe, integer, number, string

_log = Logger(namespace="hub.sinks.influxdb")


#: Kinds of journal records this sink can write (commands are the audit log's business).
WRITABLE_KINDS = ("reading", "event", "command_result")
#: HTTP statuses that waiting will not fix: the lines go to the dead-letter table.
PERMANENT_STATUSES = frozenset({400, 413, 422})
#: Splits of one batch while isolating bad lines; past this the rest goes to dead letters.
MAX_SPLITS = 64
#: Batches prepared ahead of the one in flight.
PREFETCH = 1
GZIP_LEVEL = 1


# ---------------------------------------------------------------------------- options


@dataclass(frozen=True)
class InfluxOptions:
    url: str
    bucket: str
    org: str = "-"
    token: str | None = None
    batch_size: int = 5000
    #: rows per write while more than two batches wait (default 4 × batch_size)
    catch_up_batch_size: int = 20000
    flush_interval: float = 1.0
    timeout: float = 10.0
    gzip: bool = True
    max_lag_seconds: float = 300.0
    retry_initial: float = 1.0
    retry_max: float = 60.0
    readings_measurement: str = "{quantity}"
    events_measurement: str = "events"
    results_measurement: str = "command_results"
    kinds: frozenset[str] = frozenset(WRITABLE_KINDS)
    verify_ssl: bool = True

    def __repr__(self) -> str:  # the token never reaches a log
        return f"InfluxOptions(url={self.url!r}, org={self.org!r}, bucket={self.bucket!r})"


def _url(v: Any) -> str:
    v = string()(v)
    if not v.startswith(("http://", "https://")):
        raise Invalid(f"{v!r} is not an http:// or https:// URL")
    return v.rstrip("/")


def _token(v: Any) -> str | None:
    if v is None:  # an {env:} or {file:} that could not be read: already reported
        return None
    if not isinstance(v, Secret):
        raise Invalid("write the token as {env: NAME} or {file: PATH}, not in the file itself"
                      if isinstance(v, str) else f"expected {{env: NAME}} or {{file: PATH}}, "
                      f"got {describe(v)}")
    return v


def _measurement(placeholder: bool) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        v = string()(v)
        if not v:
            raise Invalid("must not be empty")
        if placeholder:
            try:
                v.format(quantity="q")
            except (KeyError, IndexError, ValueError):
                raise Invalid(f"{v!r} may contain only the placeholder {{quantity}}") from None
        return v

    return check


def _kinds(v: Any) -> frozenset[str]:
    if not isinstance(v, list) or not v:
        raise Invalid(f"expected a non-empty list of {', '.join(WRITABLE_KINDS)}, "
                      f"got {describe(v)}")
    bad = [k for k in v if k not in WRITABLE_KINDS]
    if bad:
        raise Invalid(f"{describe(bad[0])} is not one of {', '.join(WRITABLE_KINDS)}")
    return frozenset(v)


def check_options(s: Section) -> InfluxOptions:
    opts = InfluxOptions(
        url=s.get("url", _url),
        bucket=s.get("bucket", string(r".+", "a bucket name")),
        org=s.get("org", string(r".+", "an organisation name"), "-"),
        token=s.get("token", _token, None),
        batch_size=(batch := s.get("batch_size", integer(1, 100_000), 5000)),
        catch_up_batch_size=s.get("catch_up_batch_size", integer(1, 100_000),
                                  min(4 * batch, 100_000) if batch else 20000),
        flush_interval=s.get("flush_interval", number(0.01, 3600, "s"), 1.0),
        timeout=s.get("timeout", number(0.1, 3600, "s"), 10.0),
        gzip=s.get("gzip", boolean, True),
        max_lag_seconds=s.get("max_lag_seconds", number(1, None, "s"), 300.0),
        retry_initial=s.get("retry_initial", number(0.01, 3600, "s"), 1.0),
        retry_max=s.get("retry_max", number(0.01, 86400, "s"), 60.0),
        readings_measurement=s.get("readings_measurement", _measurement(True), "{quantity}"),
        events_measurement=s.get("events_measurement", _measurement(False), "events"),
        results_measurement=s.get("results_measurement", _measurement(False),
                                  "command_results"),
        kinds=s.get("kinds", _kinds, frozenset(WRITABLE_KINDS)),
        verify_ssl=s.get("verify_ssl", boolean, True),
    )
    if (opts.batch_size is not None and opts.catch_up_batch_size is not None
            and opts.catch_up_batch_size < opts.batch_size):
        s.checker.error(s.path / "catch_up_batch_size", f"{opts.catch_up_batch_size} is "
                        f"below batch_size ({opts.batch_size})")
    if (opts.retry_initial is not None and opts.retry_max is not None
            and opts.retry_max < opts.retry_initial):
        s.checker.error(s.path / "retry_max", f"{opts.retry_max:g} s is below retry_initial "
                        f"({opts.retry_initial:g} s)")
    s.finish()
    return opts
