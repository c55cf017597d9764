"""Options of the ``gb26875`` sink, checked with the configuration (errors name key paths)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hub.model import QUANTITIES
from hub.validate import Invalid, Section, describe, integer, number, string

#: Table 6 codes for the quantities the standard has, with their resolution; residual
#: current has no code in the 2011 table, so it goes on a user-defined one (128+).
DEFAULT_ANALOG = {"temperature": (3, 0.1), "voltage": (8, 0.1), "current": (9, 0.1),
                  "residual_current": (128, 1.0)}


@dataclass(frozen=True)
class Centre:
    host: str
    port: int
    name: str


@dataclass(frozen=True)
class GBOptions:
    centres: tuple[Centre, ...]
    source_address: int = 0
    destination_address: int = 0
    #: protocol version bytes of every frame (control unit bytes 5-6): major.minor; 1.1 is
    #: what the standard's sample frames carry and centres built from them expect
    main_version: int = 1
    user_version: int = 1
    timeout: float = 10.0
    retries: int = 3
    reconnect_initial: float = 1.0
    reconnect_max: float = 60.0
    liveness_interval: float = 60.0
    liveness_type: int = 21
    system_type: int = 129
    system_address: int = 1
    system_addresses: dict[str, int] = field(default_factory=dict)
    host_component_type: int = 16
    residual_component_type: int = 17
    temperature_component_type: int = 18
    component_addresses: dict[str, int] = field(default_factory=dict)
    #: quantity -> (analog type code, resolution in the quantity's unit)
    analog_types: dict[str, tuple[int, float]] = field(
        default_factory=lambda: dict(DEFAULT_ANALOG))
    readings: bool = False
    utc_offset: float | None = None
    read_ahead: int = 200


def _centres(s: Section) -> tuple[Centre, ...]:
    raw = s.raw("centres", None)
    if not isinstance(raw, list) or not raw:
        s.checker.error(s.path / "centres", f"expected a non-empty list of {{host, port}}, "
                        f"got {describe(raw)}")
        return ()
    out = []
    for i, item in enumerate(raw):
        sub = Section(s.checker, s.path / "centres" / i, item)
        host = sub.get("host", string(r".+", "a host name or address"))
        port = sub.get("port", integer(1, 65535))
        name = sub.get("name", string(r"[A-Za-z0-9_.:-]+", "a name"), f"{host}:{port}")
        sub.finish()
        out.append(Centre(host, port, name))
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        s.checker.error(s.path / "centres", "two centres have the same name (give each a "
                        "distinct name:)")
    return tuple(out)


def _int_map(lo: int, hi: int):
    def check(v: Any) -> dict[str, int]:
        if not isinstance(v, dict):
            raise Invalid(f"expected a mapping, got {describe(v)}")
        out = {}
        for k, x in v.items():
            if isinstance(x, bool) or not isinstance(x, int) or not lo <= x <= hi:
                raise Invalid(f"{k}: expected an integer {lo}-{hi}, got {describe(x)}")
            out[str(k)] = x
        return out
    return check


def _analog(v: Any) -> dict[str, tuple[int, float]]:
    if not isinstance(v, dict):
        raise Invalid(f"expected a mapping quantity -> {{code, resolution}}, got {describe(v)}")
    out = dict(DEFAULT_ANALOG)
    for q, spec in v.items():
        if q not in QUANTITIES:
            raise Invalid(f"{q!r} is not a quantity the hub knows")
        if spec is None:  # switch a default off
            out.pop(q, None)
            continue
        if not isinstance(spec, dict) or set(spec) - {"code", "resolution"} or "code" not in spec:
            raise Invalid(f"{q}: expected {{code: 1-255, resolution: number}}, got "
                          f"{describe(spec)}")
        code, res = spec["code"], spec.get("resolution", 1.0)
        if isinstance(code, bool) or not isinstance(code, int) or not 1 <= code <= 255:
            raise Invalid(f"{q}.code: expected an integer 1-255, got {describe(code)}")
        if isinstance(res, bool) or not isinstance(res, (int, float)) or res <= 0:
            raise Invalid(f"{q}.resolution: expected a positive number, got {describe(res)}")
        out[q] = (code, float(res))
    return out


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise Invalid(f"expected true or false, got {describe(v)}")
    return v


def check_options(s: Section) -> GBOptions:
    addr = integer(0, 2**48 - 1)
    byte = integer(0, 255)
    version = s.get("protocol_version", _version, (1, 1)) or (1, 1)
    if "user_version" in s:  # the older key: the minor byte alone
        if "protocol_version" in s:
            s.checker.error(s.path / "user_version", "give protocol_version only")
        version = (version[0], s.get("user_version", byte, version[1]))
    opts = GBOptions(
        centres=_centres(s),
        source_address=s.get("source_address", addr, 0),
        destination_address=s.get("destination_address", addr, 0),
        main_version=version[0],
        user_version=version[1],
        timeout=s.get("timeout", number(0.1, 10, "s"), 10.0),
        retries=s.get("retries", integer(0, 10), 3),
        reconnect_initial=s.get("reconnect_initial", number(0.01, 3600, "s"), 1.0),
        reconnect_max=s.get("reconnect_max", number(0.01, 86400, "s"), 60.0),
        liveness_interval=s.get("liveness_interval", number(1, 86400, "s"), 60.0),
        liveness_type=s.get("liveness_type", _liveness, 21),
        system_type=s.get("system_type", byte, 129),
        system_address=s.get("system_address", byte, 1),
        system_addresses=s.get("system_addresses", _int_map(0, 255), {}),
        host_component_type=s.get("host_component_type", byte, 16),
        residual_component_type=s.get("residual_component_type", byte, 17),
        temperature_component_type=s.get("temperature_component_type", byte, 18),
        component_addresses=s.get("component_addresses", _int_map(0, 2**32 - 1), {}),
        analog_types=s.get("analog_types", _analog, dict(DEFAULT_ANALOG)),
        readings=s.get("readings", _bool, False),
        utc_offset=s.get("utc_offset", number(-14, 14, "h"), None),
        read_ahead=s.get("read_ahead", integer(1, 10000), 200),
    )
    if opts.reconnect_max is not None and opts.reconnect_initial is not None \
            and opts.reconnect_max < opts.reconnect_initial:
        s.checker.error(s.path / "reconnect_max", "is below reconnect_initial")
    s.finish()
    return opts


def _version(v: Any) -> tuple[int, int]:
    """``"1.1"`` (or ``1.1``, a YAML number) -> (1, 1): the two version bytes."""
    text = str(v) if isinstance(v, (str, float)) and not isinstance(v, bool) else ""
    major, dot, minor = text.partition(".")
    if dot and major.isdigit() and minor.isdigit() and int(major) <= 255 and int(minor) <= 255:
        return int(major), int(minor)
    raise Invalid(f"expected major.minor, each 0-255 (e.g. \"1.1\"), got {describe(v)}")


def _liveness(v: Any) -> int:
    if v not in (21, 28):
        raise Invalid(f"expected 21 (UITD running state) or 28 (UITD time), got {describe(v)}")
    return v
