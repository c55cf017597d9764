"""The ``tcp_dtu`` options and device addresses, checked with the configuration."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hub.contracts import check_unit
from hub.validate import Invalid, Section, describe, integer, number, string
from plugins.transports.tcp_dtu.framing import RegistrationRule, check_registration, parse_bytes

__all__ = ["DtuOptions", "check_address", "check_options"]


@dataclass(frozen=True)
class DtuOptions:
    port: int
    host: str = "0.0.0.0"
    registration: RegistrationRule = field(default_factory=RegistrationRule)
    heartbeats: tuple[bytes, ...] = ()
    response_timeout: float = 3.0
    retries: int = 1
    registration_timeout: float = 30.0
    idle_timeout: float = 300.0
    max_connections: int = 1000
    max_buffer: int = 4096
    backlog: int = 1024
    first_poll_spread: float = 1.0


def check_options(section: Section) -> DtuOptions:
    beats = section.raw("heartbeat", [])
    beats = [beats] if isinstance(beats, str) else beats
    if not isinstance(beats, list):
        section.checker.error(section.path / "heartbeat",
                              f"expected a byte string or a list of them, got {describe(beats)}")
        beats = []
    heartbeats = tuple(
        b for i, raw in enumerate(beats)
        if (b := section.checker.check(section.path / "heartbeat" / i, parse_bytes, raw))
    )
    opts = DtuOptions(
        port=section.get("port", integer(0, 65535)),
        host=section.get("host", string(), "0.0.0.0"),
        registration=check_registration(section.section("registration")),
        heartbeats=heartbeats,
        response_timeout=section.get("response_timeout", number(0.05, 60, "s"), 3.0),
        retries=section.get("retries", integer(0, 10), 1),
        registration_timeout=section.get("registration_timeout", number(1, 600, "s"), 30.0),
        idle_timeout=section.get("idle_timeout", number(1, 86400, "s"), 300.0),
        max_connections=section.get("max_connections", integer(1, 100_000), 1000),
        max_buffer=section.get("max_buffer", integer(256, 1 << 20), 4096),
        backlog=section.get("backlog", integer(1, 65535), 1024),
        first_poll_spread=section.get("first_poll_spread", number(0, 1), 1.0),
    )
    section.finish()
    return opts


def check_address(address: Any) -> tuple[str, Any]:
    """``{dtu: ID, slave: UNIT[, poll_interval: s]}`` → the key ``(ID, UNIT)``. What a unit
    is (a Modbus slave number, a DL/T 645 meter address in quotes) is the polled protocols'
    business (:func:`hub.contracts.check_unit`); the device's model checks it again when the
    transport starts."""
    if not isinstance(address, dict):
        raise Invalid(f"expected {{dtu: ID, slave: N}}, got {describe(address)}")
    unknown = set(address) - {"dtu", "slave", "poll_interval"}
    if unknown:
        raise Invalid(f"unknown keys {', '.join(sorted(map(str, unknown)))} (dtu, slave, "
                      "poll_interval)")
    dtu = address.get("dtu")
    if isinstance(dtu, int) and not isinstance(dtu, bool):
        dtu = str(dtu)  # an IMEI written without quotes
    if not isinstance(dtu, str) or not dtu:
        raise Invalid(f"dtu: expected the DTU's registration id, got {describe(dtu)}")
    try:
        slave = check_unit(address.get("slave", 1))
    except ValueError as e:
        raise Invalid(str(e) if str(e).startswith("slave: ") else f"slave: {e}") from None
    interval = address.get("poll_interval")
    bad_type = isinstance(interval, bool) or not isinstance(interval, (int, float))
    if interval is not None and (bad_type or not 0.1 <= interval <= 86400):
        raise Invalid(f"poll_interval: {describe(interval)} is outside 0.1..86400 s")
    return (dtu, slave)
