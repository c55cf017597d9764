"""The object tree of a simulated NB-IoT electrical-fire detector: pure code, no sockets, no
clock (the caller passes ``t``, seconds since the endpoint started, and ``wall``, epoch
seconds).

Objects (IPSO/OMA ids; what the ``lwm2m_ipso`` device model reads)::

    /1/0      LwM2M Server: 0 short server id, 1 lifetime (RW), 6 notification storing,
              7 binding, 8 registration update trigger (E)
    /3/0      Device: 0 manufacturer, 1 model, 2 serial, 3 firmware, 4 reboot (E),
              9 battery level (%), 13 current time (RW)
    /3303/0-3 Temperature T1..T4: 5700 °C, 5701 "Cel"
    /3316/0-2 Voltage A/B/C: 5700 V, 5701 "V"
    /3317/0-2 Current A/B/C: 5700 A, 5701 "A"
    /3317/10  Residual current: 5700 mA, 5701 "mA", 5750 "residual"
    /3328/0   Active power: 5700 W, 5701 "W"
    /3331/0   Energy: 5700 Wh, 5701 "Wh"
    /3312/0   Power control: 5850 relay (RW, true = closed)
    /3200/0   Digital input: 5500 alarm contact (true while the detector's own alarm is on)
    /19/0     BinaryAppDataContainer, uplink: 0 Data (multiple; instance 0 is the device's
              own frame, see :func:`frame`), 2 Data Creation Time
    /5/0      Firmware Update: 0 Package (W, Block1), 1 Package URI (RW), 2 Update (E),
              3 State, 5 Update Result, 6 PkgName, 7 PkgVersion, 9 Delivery Method
              (see :mod:`.firmware`)
    /19/1     BinaryAppDataContainer, downlink: 0 Data (RW, multiple): each instance written
              is a frame for the device (``{"cmd": "trip"}`` / ``{"cmd": "close"}``)

Opening the relay (writing false to /3312/0/5850, or the frame ``{"cmd": "trip"}`` to
/19/1/0) drops the phase and residual currents and the power to 0, as the breaker downstream
of the detector would.

Like Leshan and wakaama, a write to the multiple resource /19/1/0 must carry resource
instances (a TLV multiple resource, or SenML names ``/19/1/0/<n>``); a bare single value is
refused with 4.00.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from hub.contracts.lwm2m import Lwm2mValue, Path, Value
from plugins.simulators.lwm2m.firmware import FirmwareObject
from plugins.simulators.scenario import DEVICE_SET_POINTS, ENERGY, Scenario

__all__ = [
    "ALARM_RESIDUAL_MA",
    "ALARM_TEMPERATURE_C",
    "OBJECTS",
    "BadRequest",
    "Lwm2mError",
    "MethodNotAllowed",
    "NotFound",
    "Resource",
    "SimDevice",
    "link_payload",
    "registration_query",
]

ALARM_TEMPERATURE_C = DEVICE_SET_POINTS["temperature"]  # the detector's own set points, for
ALARM_RESIDUAL_MA = DEVICE_SET_POINTS["residual_current"]  # its alarm contact
ENERGY_START = ENERGY["active_energy"][0] * 1000  # Wh at t = 0

Kind = Literal["string", "integer", "float", "boolean", "time", "opaque", "none"]


@dataclass(frozen=True)
class Resource:
    name: str
    kind: Kind
    ops: Literal["R", "RW", "E"] = "R"
    multiple: bool = False  # a multiple-instance resource: values at /o/i/r/<n>


def _sensor(unit: str, **extra: Resource) -> dict[int, Resource]:
    res = {5700: Resource("Sensor Value", "float"), 5701: Resource("Sensor Units", "string")}
    res.update({int(k[1:]): v for k, v in extra.items()})
    return res


_SERVER = {0: Resource("Short Server ID", "integer"), 1: Resource("Lifetime", "integer", "RW"),
           6: Resource("Notification Storing", "boolean"), 7: Resource("Binding", "string"),
           8: Resource("Registration Update Trigger", "none", "E")}
_DEVICE = {0: Resource("Manufacturer", "string"), 1: Resource("Model Number", "string"),
           2: Resource("Serial Number", "string"), 3: Resource("Firmware Version", "string"),
           4: Resource("Reboot", "none", "E"), 9: Resource("Battery Level", "integer"),
           13: Resource("Current Time", "time", "RW")}

#: (object, instance) → resources; the registration announces exactly these instances
OBJECTS: dict[tuple[int, int], dict[int, Resource]] = {
    (1, 0): _SERVER,
    (3, 0): _DEVICE,
    (5, 0): {0: Resource("Package", "opaque", "RW"), 1: Resource("Package URI", "string", "RW"),
             2: Resource("Update", "none", "E"), 3: Resource("State", "integer"),
             5: Resource("Update Result", "integer"), 6: Resource("PkgName", "string"),
             7: Resource("PkgVersion", "string"),
             9: Resource("Firmware Update Delivery Method", "integer")},
    **{(3303, i): _sensor("Cel") for i in range(4)},
    **{(3316, i): _sensor("V") for i in range(3)},
    **{(3317, i): _sensor("A") for i in range(3)},
    (3317, 10): _sensor("mA", r5750=Resource("Application Type", "string")),
    (3328, 0): _sensor("W"),
    (3331, 0): _sensor("Wh"),
    (3312, 0): {5850: Resource("On/Off", "boolean", "RW")},
    (3200, 0): {5500: Resource("Digital Input State", "boolean")},
    (19, 0): {0: Resource("Data", "opaque", multiple=True),
              2: Resource("Data Creation Time", "time")},
    (19, 1): {0: Resource("Data", "opaque", "RW", multiple=True)},
}
_UNITS = {3303: "Cel", 3316: "V", 3317: "A", 3328: "W", 3331: "Wh"}


class Lwm2mError(Exception):
    """An operation the device refuses; ``code`` is the CoAP response code (e.g. 132, 4.04)."""

    code = 128  # 4.00


class BadRequest(Lwm2mError):
    code = 128


class NotFound(Lwm2mError):
    code = 132


class MethodNotAllowed(Lwm2mError):
    code = 133


def link_payload(content_format: int) -> str:
    """The registration payload (CoRE link format): the root with the content format the
    device prefers, then every object instance."""
    links = [f'</>;rt="oma.lwm2m";ct={content_format}']
    links += [f"</{o}/{i}>" for o, i in sorted(OBJECTS)]
    return ",".join(links)


def registration_query(endpoint: str, lifetime: int, queue: bool,
                       version: str = "1.1") -> tuple[str, ...]:
    """The Uri-Query options of a Register request (LwM2M 1.1: queue mode is its own ``Q``
    flag, the binding stays ``U``)."""
    query = (f"ep={endpoint}", f"lt={lifetime}", f"lwm2m={version}", "b=U")
    return (*query, "Q") if queue else query


def frame(values: dict[Path, Value]) -> bytes:
    """The detector's own frame in /19/0/0/0: its measurements as compact JSON (what a
    vendor's transparent-mode firmware sends; ``lwm2m_binary`` with a ``json_map`` frame
    model decodes it)::

        {"T": [T1, T2, T3, T4], "U": [A, B, C], "I": [A, B, C], "leak": mA, "relay": 1}
    """
    doc = {"T": [values[(3303, i, 5700)] for i in range(4)],
           "U": [values[(3316, i, 5700)] for i in range(3)],
           "I": [values[(3317, i, 5700)] for i in range(3)],
           "leak": values[(3317, 10, 5700)], "relay": int(bool(values[(3312, 0, 5850)]))}
    return json.dumps(doc, separators=(",", ":")).encode()


def _coerce(kind: Kind, value: Value) -> Value:
    """A written value as the resource's type. TLV carries no types, so a TLV write arrives
    as bytes and is read the way the resource's type says."""
    try:
        if kind == "opaque":
            if isinstance(value, str):
                return value.encode("utf-8")
            if not isinstance(value, bytes):
                raise ValueError(f"{value!r} is not opaque bytes")
            return value
        if isinstance(value, bytes):
            if kind == "boolean":
                if len(value) != 1 or value[0] > 1:
                    raise ValueError(f"{value.hex()} is not a TLV boolean")
                return bool(value[0])
            if kind in ("integer", "time"):
                if len(value) not in (1, 2, 4, 8):
                    raise ValueError(f"{len(value)} bytes is no TLV integer")
                return int.from_bytes(value, "big", signed=True)
            if kind == "float":
                if len(value) not in (4, 8):
                    raise ValueError(f"{len(value)} bytes is no TLV float")
                return struct.unpack(">f" if len(value) == 4 else ">d", value)[0]
            return value.decode("utf-8")
        if kind == "boolean":
            if isinstance(value, str):
                if value not in ("0", "1", "true", "false"):
                    raise ValueError(f"{value!r} is not a boolean")
                return value in ("1", "true")
            if isinstance(value, (bool, int)) and value in (0, 1):
                return bool(value)
            raise ValueError(f"{value!r} is not a boolean")
        if kind in ("integer", "time"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(f"{value!r} is not an integer")
            return int(value)  # type: ignore[arg-type]
        if kind == "float":
            return float(value)  # type: ignore[arg-type]
        return str(value)
    except (ValueError, TypeError, UnicodeDecodeError) as e:
        raise BadRequest(str(e)) from None


@dataclass
class _State:
    relay_closed: bool = True
    lifetime: int = 300
    clock_offset: float = 0.0  # written Current Time minus our wall clock
    energy_wh: float = ENERGY_START
    energy_t: float = 0.0
    #: frames written to /19/1/0, by instance, the latest write's only
    downlink: dict[int, bytes] = field(default_factory=dict)
    downlinks: list[bytes] = field(default_factory=list)  # every frame received, in order


class SimDevice:
    """One simulated detector: its resources' values at a time, and the operations a server
    may perform on them. Operations return what the endpoint must do next, never do it."""

    def __init__(self, imei: str, scenario: Scenario, *, lifetime: int = 300,
                 queue: bool = False, model: str = "EFD-NB1") -> None:
        self.imei = imei
        self.endpoint = f"urn:imei:{imei}"
        self.scenario = scenario
        self.queue = queue
        self.model = model
        self.state = _State(lifetime=lifetime)
        self.firmware = FirmwareObject()

    # ------------------------------------------------------------------ values

    @property
    def relay_closed(self) -> bool:
        return self.state.relay_closed

    @property
    def lifetime(self) -> int:
        return self.state.lifetime

    def sample(self, t: float, wall: float) -> dict[Path, Value]:
        """Every readable resource's value at ``t``."""
        sc, closed = self.scenario, self.state.relay_closed
        temps = [round(sc.value("temperature", f"T{i + 1}", t), 2) for i in range(4)]
        volts = [round(sc.value("voltage", p, t), 2) for p in "ABC"]
        amps = [round(sc.value("current", p, t), 3) if closed else 0.0 for p in "ABC"]
        residual = round(sc.value("residual_current", "L1", t), 2) if closed else 0.0
        power = round(sum(v * a for v, a in zip(volts, amps, strict=True)), 1)
        st = self.state
        if t > st.energy_t:  # integrate; a sample out of order adds nothing
            st.energy_wh += power * (t - st.energy_t) / 3600
            st.energy_t = t
        alarm = max(temps) > ALARM_TEMPERATURE_C or residual > ALARM_RESIDUAL_MA
        v: dict[Path, Value] = {
            (1, 0, 0): 1, (1, 0, 1): st.lifetime, (1, 0, 6): True,
            (1, 0, 7): "UQ" if self.queue else "U",
            (3, 0, 0): "Hub Simulator", (3, 0, 1): self.model, (3, 0, 2): f"SN{self.imei[-8:]}",
            (3, 0, 3): self.firmware.version, (3, 0, 9): round(sc.value("battery_level", "", t)),
            (3, 0, 13): int(wall + st.clock_offset),
            (3317, 10, 5700): residual, (3317, 10, 5701): "mA", (3317, 10, 5750): "residual",
            (3328, 0, 5700): power, (3331, 0, 5700): round(st.energy_wh, 1),
            (3312, 0, 5850): closed, (3200, 0, 5500): alarm,
        }
        for obj, values in ((3303, temps), (3316, volts), (3317, amps)):
            for i, x in enumerate(values):
                v[(obj, i, 5700)] = x
        for (obj, inst), _ in OBJECTS.items():
            if obj in _UNITS and (obj, inst, 5701) not in v:
                v[(obj, inst, 5701)] = _UNITS[obj]
        v.update(self.firmware.values())
        v[(19, 0, 0, 0)] = frame(v)
        v[(19, 0, 2)] = int(wall + st.clock_offset)
        for n, data in st.downlink.items():
            v[(19, 1, 0, n)] = data
        return v

    def read(self, path: Path, t: float, wall: float,
             ts: float | None = None) -> list[Lwm2mValue]:
        """The values under ``path`` (object, instance or resource), in path order."""
        self._check(path)
        if len(path) == 3 and OBJECTS[path[:2]][path[2]].kind == "none":
            raise MethodNotAllowed(f"/{path[0]}/{path[1]}/{path[2]} is executable, not readable")
        if path[:3] == (5, 0, 0):
            raise MethodNotAllowed("/5/0/0 Package is write-only")
        n = len(path)
        return [Lwm2mValue(p, x, ts) for p, x in sorted(self.sample(t, wall).items())
                if p[:n] == path]

    # ------------------------------------------------------------------ operations

    def write(self, path: Path, values: Iterable[Lwm2mValue]) -> set[Path]:
        """Apply a Write (Replace or Partial Update) of ``values`` under ``path``; returns the
        resources whose value changed. Refuses the whole write if any value is refused."""
        self._check(path)
        if len(path) < 2:
            raise MethodNotAllowed("write an instance or a resource, not an object")
        updates: dict[Path, Value] = {}
        frames: dict[int, bytes] = {}
        for item in values:
            p = item.path[:3]
            if len(item.path) not in (3, 4) or item.path[:len(path)] != path:
                raise BadRequest(f"value for {item.path} outside {path}")
            self._check(p)
            res = OBJECTS[p[:2]][p[2]]
            if res.ops != "RW":
                raise MethodNotAllowed(f"/{'/'.join(map(str, p))} ({res.name}) is not writable")
            if res.multiple != (len(item.path) == 4):
                # what Leshan and wakaama answer to a bare value for a multiple resource
                raise BadRequest(f"/{'/'.join(map(str, p))} is a "
                                 f"{'multiple' if res.multiple else 'single'} resource: "
                                 f"{'write its instances' if res.multiple else 'no instances'}")
            value = _coerce(res.kind, item.value)
            if res.multiple:
                frames[item.path[3]] = value  # type: ignore[assignment]
            else:
                updates[p] = value
        if not updates and not frames:
            raise BadRequest("nothing to write")
        changed: set[Path] = set()
        st = self.state
        if frames:
            st.downlink = frames
            for n in sorted(frames):
                st.downlinks.append(frames[n])
                closed = _frame_command(frames[n])
                if closed is not None:
                    updates[(3312, 0, 5850)] = closed
        for p, value in updates.items():
            if p == (3312, 0, 5850) and value != st.relay_closed:
                st.relay_closed = bool(value)
                changed.add(p)
            elif p == (1, 0, 1):
                if not 1 <= int(value) <= 2**31 - 1:  # type: ignore[arg-type]
                    raise BadRequest(f"lifetime {value} out of range")
                if value != st.lifetime:
                    st.lifetime = int(value)  # type: ignore[arg-type]
                    changed.add(p)
            elif p == (3, 0, 13):
                st.clock_offset = 0.0  # the server set our clock: we take its time as ours
        return changed

    def check_writable(self, path: Path) -> None:
        """Refuse a write on ``path`` before its payload is decoded (a read-only resource
        answers 4.05 whatever was sent)."""
        self._check(path)
        if len(path) >= 3 and OBJECTS[path[:2]][path[2]].ops != "RW":
            raise MethodNotAllowed(f"/{'/'.join(map(str, path))} is not writable")

    def execute(self, path: Path) -> Literal["reboot", "update"]:
        """What executing ``path`` asks the endpoint to do."""
        self._check(path)
        if len(path) != 3 or OBJECTS[path[:2]][path[2]].ops != "E":
            raise MethodNotAllowed(f"/{'/'.join(map(str, path))} is not executable")
        return "reboot" if path == (3, 0, 4) else "update"

    def observable(self, path: Path) -> bool:
        try:
            self._check(path)
        except Lwm2mError:
            return False
        return not (len(path) == 3 and OBJECTS[path[:2]][path[2]].kind == "none")

    @staticmethod
    def _check(path: Sequence[int]) -> None:
        if len(path) == 4:  # a resource instance: only of a multiple resource
            SimDevice._check(path[:3])
            if not OBJECTS[tuple(path[:2])][path[2]].multiple:
                raise NotFound(f"/{'/'.join(map(str, path[:3]))} has no instances")
            return
        if not 1 <= len(path) <= 3:
            raise NotFound(f"{path} is not an object, instance or resource path")
        if len(path) == 1:
            if not any(o == path[0] for o, _ in OBJECTS):
                raise NotFound(f"no object {path[0]}")
            return
        if tuple(path[:2]) not in OBJECTS:
            raise NotFound(f"no instance /{path[0]}/{path[1]}")
        if len(path) == 3 and path[2] not in OBJECTS[tuple(path[:2])]:
            raise NotFound(f"no resource /{path[0]}/{path[1]}/{path[2]}")


def _frame_command(data: bytes) -> bool | None:
    """The relay state a downlink frame asks for (``True`` closed), ``None`` for any other
    frame (kept, not acted on)."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    cmd = doc.get("cmd") if isinstance(doc, dict) else None
    return {"trip": False, "close": True}.get(cmd) if isinstance(cmd, str) else None
