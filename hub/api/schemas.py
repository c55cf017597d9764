"""Request and response bodies (pydantic v2): what the OpenAPI schema publishes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Name = Field(min_length=1, max_length=128)
Text = Field(default="", max_length=1000)

RoleName = Literal["admin", "manager", "operator", "viewer", "auditor"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Error(BaseModel):
    detail: Any


#: responses every authenticated route may give, for the OpenAPI schema
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Error, "description": "no or bad credentials"},
    403: {"model": Error, "description": "in your scope, but your role may not do this"},
    404: {"model": Error, "description": "no such resource in your scope"},
}


# ---------------------------------------------------------------- auth

class LoginIn(Strict):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)


class RefreshIn(Strict):
    refresh_token: str = Field(min_length=1, max_length=512)


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    refresh_token: str
    refresh_expires_in: int


class GrantOut(BaseModel):
    id: int
    role: str
    node_id: int
    node_path: list[str]


class MeOut(BaseModel):
    name: str
    kind: Literal["user", "api_key"]
    grants: list[GrantOut]


# ---------------------------------------------------------------- users and keys

class UserIn(Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(min_length=1, max_length=1024)
    display_name: str = Field(default="", max_length=128)
    role: RoleName
    node_id: int = Field(ge=1, le=2**62)


class UserOut(BaseModel):
    id: int
    name: str
    display_name: str
    disabled: bool
    locked: bool
    grants: list[GrantOut]


class UserPatch(Strict):
    display_name: str | None = Field(default=None, max_length=128)
    disabled: bool | None = None
    password: str | None = Field(default=None, min_length=1, max_length=1024)
    unlock: bool | None = None


class GrantIn(Strict):
    role: RoleName
    node_id: int = Field(ge=1, le=2**62)


class ApiKeyIn(Strict):
    name: str = Field(min_length=1, max_length=128)
    role: RoleName
    node_id: int = Field(ge=1, le=2**62)


class ApiKeyOut(BaseModel):
    id: str
    name: str
    role: str
    node_id: int
    created_ts: float
    revoked: bool
    key: str | None = Field(default=None, description="the whole key; shown once, at creation")


# ---------------------------------------------------------------- organisation

class ProjectFields(Strict):
    type: str = Field(default="", max_length=128)
    address: str = Field(default="", max_length=512)
    region: str = Field(default="", max_length=128)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    leader: str = Field(default="", max_length=128)
    safety_officer: str = Field(default="", max_length=128)
    created_date: str = Field(default="", max_length=32)
    accepted_date: str = Field(default="", max_length=32)


class UnitIn(Strict):
    name: str = Field(min_length=1, max_length=128)
    parent_id: int = Field(default=1, ge=1, le=2**62)


class UnitPatch(Strict):
    name: str = Field(min_length=1, max_length=128)


class NodeOut(BaseModel):
    id: int
    parent_id: int | None
    kind: str
    name: str
    path: list[str]


class ProjectIn(ProjectFields):
    name: str = Field(min_length=1, max_length=128)
    code: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$",
                      description="the key devices name in `project:`")
    unit_id: int = Field(default=1, ge=1, le=2**62)


class ProjectPatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=128)
    type: str | None = Field(default=None, max_length=128)
    address: str | None = Field(default=None, max_length=512)
    region: str | None = Field(default=None, max_length=128)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    leader: str | None = Field(default=None, max_length=128)
    safety_officer: str | None = Field(default=None, max_length=128)
    created_date: str | None = Field(default=None, max_length=32)
    accepted_date: str | None = Field(default=None, max_length=32)


class ProjectOut(ProjectFields):
    model_config = ConfigDict(extra="ignore")
    id: int
    name: str
    code: str
    unit_id: int | None
    path: list[str]


# ---------------------------------------------------------------- devices and data

class ReadingOut(BaseModel):
    quantity: str
    channel: str
    value: float | None
    ts: float
    quality: str
    unit: str = ""


class StreamReadingOut(ReadingOut):
    """A reading in the live stream (``event: reading``)."""

    seq: int
    device: str


class CommandResultOut(BaseModel):
    """A command's progress in the live stream (``event: command_result``)."""

    seq: int | None = None
    command_id: str
    device: str
    status: str
    ts: float
    detail: str = ""


class EventOut(BaseModel):
    seq: int | None = None
    id: str
    device: str
    kind: str
    code: str
    state: str
    level: str
    ts: float
    channel: str = ""
    value: float | None = None
    set_point: float | None = None
    message: str = ""


Address = str | int | dict[str, str | int | float] | None


class HeartbeatIn(Strict):
    interval: float | None = Field(default=None, description="seconds between signs of life")
    timeout_count: int | None = Field(default=None, description="missed ones before offline")


class RatedIn(Strict):
    """A rated current given in parts (README "Load rate")."""

    current: float | None = Field(default=None, description="A, every current channel")
    channels: dict[str, float] | None = Field(
        default=None, max_length=64, description="A per channel (phase A/B/C or circuit)")
    capacity_kva: float | None = Field(default=None, description="the current comes from "
                                       "a capacity: I = S / (√3 U), or S / U single-phase")
    voltage: float | None = Field(default=None, description="V, with capacity_kva (400)")
    phases: int | None = Field(default=None, description="1 or 3, with capacity_kva (3)")


class DeviceSettingsIn(Strict):
    """As a YAML device's ``alarms``, ``heartbeat`` and ``rated`` (checked by the same
    checks)."""

    alarms: dict[str, dict[str, float | bool]] | None = Field(
        default=None, max_length=32,
        description="per alarm type: alarm, warning, warning_ratio, hysteresis, delay, "
                    "clear_delay, enabled (over the hub-wide alarms.defaults)")
    heartbeat: HeartbeatIn | None = None
    rated: float | RatedIn | None = Field(
        default=None, description="rated current for the load rate: amperes, or parts; "
        "over the rollups sink's reports.rated for this device")


class DeviceIn(Strict):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    name: str = Field(min_length=1, max_length=128)
    project: str = Field(min_length=1, max_length=64)
    model: str = Field(min_length=1, max_length=64)
    transport: str = Field(min_length=1, max_length=64)
    address: Address = Field(default=None, description="what the transport needs, as in "
                             "the configuration: {dtu: ID, slave: N}, an LwM2M endpoint, "
                             "an MQTT device id, a simulator profile")
    location: str = Field(default="", max_length=256)
    settings: DeviceSettingsIn = Field(default_factory=DeviceSettingsIn)


class DevicePatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=128)
    project: str | None = Field(default=None, min_length=1, max_length=64)
    model: str | None = Field(default=None, min_length=1, max_length=64)
    transport: str | None = Field(default=None, min_length=1, max_length=64)
    address: Address = None
    location: str | None = Field(default=None, max_length=256)
    settings: DeviceSettingsIn | None = None


class DeviceOut(BaseModel):
    id: str
    name: str
    project: str
    model: str
    transport: str | None
    location: str
    source: Literal["config", "api"]
    online: bool | None
    last_seen: float | None
    active_alarms: int


class ThresholdOut(BaseModel):
    alarm: float
    warning: float | None
    hysteresis: float
    delay: float
    clear_delay: float


class HeartbeatOut(BaseModel):
    interval: float = Field(description="seconds between signs of life")
    timeout_count: int = Field(description="missed ones before offline")


class DeviceSettingsOut(BaseModel):
    """What the running hub applies to the device (its own settings over the model's and
    the hub-wide defaults), and for a device created through the API its settings as
    stored."""

    running: bool = Field(description="the device runs in the hub (else see the hub's log)")
    alarms: dict[str, ThresholdOut] = Field(description="enabled alarm types and their "
                                            "set points")
    heartbeat: HeartbeatOut | None
    rated: str | None = Field(default=None, description="its own rated current, for the "
                              "load rate (else the rollups sink's reports.rated applies)")
    stored: dict[str, Any] | None = Field(
        default=None, description="source api: the settings as stored (what PATCH "
        "settings replaces); source config: null (they are in the configuration file)")


class DeviceDetail(DeviceOut):
    readings: list[ReadingOut]
    alarms: list[EventOut]
    settings: DeviceSettingsOut


class GatewayOut(BaseModel):
    id: str
    transport: str
    kind: str = Field(description="dtu, lwm2m, mqtt or simulator")
    auth: str = Field(description="how the hub recognises it")
    connected: bool
    address: str | None = Field(description="its peer address while connected")
    last_seen: float | None = Field(description="UTC epoch seconds of its last message")
    devices: list[str] = Field(description="the devices behind it that the caller may see")


class DevicePage(BaseModel):
    items: list[DeviceOut]
    total: int
    offset: int
    limit: int


class HistoryPoint(BaseModel):
    ts: float
    min: float | None
    max: float | None
    avg: float | None
    n: int


class HistoryOut(BaseModel):
    device: str
    quantity: str
    channel: str | None
    bucket_seconds: float
    raw_points: int
    points: list[HistoryPoint]
    #: "rollups" when the range was read from hourly/daily rollups (raw_points: buckets)
    source: str = "readings"


class EventPage(BaseModel):
    items: list[EventOut]
    next_after: int
    last_seq: int


class AckIn(Strict):
    note: str = Field(default="", max_length=1000)


class AckOut(BaseModel):
    event_id: str
    device: str
    seq: int


class CommandIn(Strict):
    action: str = Field(min_length=1, max_length=64)
    channel: str = Field(default="", max_length=32)
    params: dict[str, str | int | float | bool] = Field(default_factory=dict,
                                                       max_length=32)
    ttl: float = Field(default=30.0, gt=0, le=86400)
    wait: bool = Field(default=False, description="answer once the command has ended "
                       "(at most ttl seconds)")


class CommandOut(BaseModel):
    """A command started through the API; also its state while the hub runs."""

    id: str
    device: str
    action: str
    channel: str
    params: dict[str, Any]
    requested_by: str
    status: str
    detail: str = ""
    history: list[dict[str, Any]] = Field(default_factory=list)

    def move(self, status: str, ts: float, detail: str = "") -> None:
        self.status = status
        self.detail = detail
        self.history.append({"status": status, "ts": ts, "detail": detail})


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}
