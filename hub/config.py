"""Loading and validating ``hub.yaml``.

Everything is checked before anything starts, and every error is reported at once, each
naming the file, the key path and what was expected. Plugins check their own sections
(``transports.<id>``, ``sinks.<id>``, ``models.<id>``) through the ``check_options`` of
their type.

Secrets never need to sit in the file: wherever a string is expected, ``{env: NAME}`` reads
an environment variable and ``{file: PATH}`` reads a file (relative to the config file, with
the trailing newline stripped). They become :class:`Secret` values that print as ``***``.

Relative paths in the file (``hub.state_dir``, ``journal.path``, ``audit.path``,
``audit.key_file``, secret files, a model's ``map:``) are relative to the directory of the
configuration file, never to the working directory: ``hub devices -c /etc/hub/hub.yaml``
reads the same journal from anywhere. (A ``map:`` not found there is still looked up in the
working directory, for configurations written relative to a checkout.)

(About 550 lines, over the ~500 the project aims at: it reads the whole file's schema in
one place, section by section, so the reading order and the cross-references between
sections stay visible; the alarm set points, the largest self-contained part, are in
:mod:`hub.config_alarms`.)

A value of the wrong type is a configuration error naming its key, never a traceback: a
check that fails yields ``None`` (see :meth:`hub.validate.Section.get`), so nothing here
computes with a checked value before it knows the check passed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from hub.alarms import Threshold
from hub.api.settings import ApiSettings, parse_api
from hub.cluster.settings import ClusterSettings, parse_cluster
from hub.config_alarms import alarm_defaults as _alarm_defaults
from hub.config_alarms import base_ratio, threshold
from hub.journal.recent import RECENT_ROWS, RECENT_ROWS_HELD
from hub.model import ALARM_RULES
from hub.validate import (
    Checker,
    ConfigError,
    Invalid,
    Path,
    Section,
    boolean,
    choice,
    describe,
    integer,
    number,
    regex,
    string,
)

if TYPE_CHECKING:
    import re

    from hub.pluginmanager import HubPlugins

#: libyaml's safe loader when PyYAML was built with it: the same documents and types as
#: ``yaml.safe_load``, measured 5x faster on a 19,000-device configuration (52 s → 11 s)
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

DEVICE_ID = r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}"
NAME = r"[A-Za-z][A-Za-z0-9_\-]{0,63}"


class Secret(str):
    """A string read from the environment or a file; shown as ``***`` in logs and reprs.

    It *is* the secret string (so libraries accept it), but ``repr`` and ``format`` with
    ``!r`` hide it, and :func:`redact` replaces it in anything printed.
    """

    source: str

    def __new__(cls, value: str, source: str) -> Secret:
        s = super().__new__(cls, value)
        s.source = source
        return s

    def __repr__(self) -> str:
        return f"Secret({self.source})"


def _resolve_secrets(node: Any, path: Path, base: str, checker: Checker) -> Any:
    if isinstance(node, dict):
        if len(node) == 1 and next(iter(node)) in ("env", "file"):
            (kind, ref), = node.items()
            if not isinstance(ref, str):
                checker.error(path / kind, f"expected a name, got {describe(ref)}")
                return None
            if kind == "env":
                if ref not in os.environ:
                    checker.error(path, f"environment variable {ref} is not set")
                    return None
                return Secret(os.environ[ref], f"env:{ref}")
            fpath = ref if os.path.isabs(ref) else os.path.join(base, ref)
            try:
                with open(fpath, encoding="utf-8") as f:
                    return Secret(f.read().rstrip("\r\n"), f"file:{ref}")
            except OSError as e:
                checker.error(path, f"cannot read secret file {fpath}: {e.strerror}")
                return None
        return {k: _resolve_secrets(v, path / str(k), base, checker) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve_secrets(v, path / i, base, checker) for i, v in enumerate(node)]
    return node


# ---------------------------------------------------------------- the validated configuration


@dataclass(frozen=True)
class JournalSettings:
    path: str
    # Measured (scripts/bench_journal.py): each commit rewrites one index page per device it
    # touches, so bigger, rarer commits cost less per reading: 5 ms/5,000 gave ~90-100k
    # readings/s on a 1-2 M row journal, 20 ms/20,000 ~130-140k. 20 ms is far inside every
    # latency the standard sets (10 s to notify, 100 ms for a wired command).
    commit_interval: float = 0.02
    max_batch: int = 20000
    max_bytes: int | None = None
    warn_ratio: float = 0.9
    retention: float | None = None
    synchronous: str = "normal"
    prune_interval: float = 60.0
    #: rows kept in memory for the sinks, and at most while a sink has not read them
    #: (hub.journal.recent); a cluster core's partitions share them out
    recent_rows: int = RECENT_ROWS
    recent_rows_held: int = RECENT_ROWS_HELD


@dataclass(frozen=True)
class GcSettings:
    """Python's garbage collector in ``hub run`` (``hub.gc``). Its full collections walk every
    live object: with 10,000 DTU sessions that stalled the loop for 300-700 ms several times
    a minute, the tail of every poll's round trip (scripts/bench_dtu.py)."""

    #: after start-up, collect once and move everything alive (configuration, registry,
    #: maps, code) out of the collector's sight for good (``gc.freeze()``)
    freeze: bool = True
    #: ``gc.set_threshold``: allocations before a young collection, and young collections
    #: per older one. A large first number lets a poll's short-lived records die before
    #: a collection sees them, instead of being promoted and walked again and again.
    threshold: tuple[int, int, int] = (50_000, 20, 100)


@dataclass(frozen=True)
class PresenceSettings:
    heartbeat_interval: float = 60.0
    timeout_count: int = 3


@dataclass(frozen=True)
class TypedSection:
    """A configured transport, sink or model instance: its id, type and checked options."""

    name: str
    type: str
    options: Any
    #: presence settings shared by every device of a model (devices may still override)
    heartbeat_interval: float | None = None
    timeout_count: int | None = None


@dataclass(frozen=True)
class ProvisionRule:
    """Accept an unknown device whose identity matches ``match`` on ``transport``."""

    transport: str
    match: re.Pattern[str]
    model: str
    project: str = ""
    name: str = "{id}"


@dataclass(frozen=True)
class DeviceSettings:
    id: str
    model: str
    transport: str | None
    address: Any
    address_key: Any
    name: str
    location: str = ""
    project: str = ""
    group: str = ""
    alarms: dict[str, Threshold] = field(default_factory=dict)
    heartbeat_interval: float | None = None
    timeout_count: int | None = None
    #: its rated current (:class:`hub.analysis.load.Rating`), for the load rate
    rated: Any = None


@dataclass(frozen=True)
class AuditSettings:
    """The audit log (``audit``): its file, the checkpoint key and how often to sign."""

    path: str
    #: Ed25519 private key in PEM (mode 0600), generated on first start; its public half
    #: is written beside it as ``<name>.pub.pem``
    key_file: str
    #: a signed checkpoint after this many entries ...
    checkpoint_every: int = 1000
    #: ... or this many seconds after the first unsigned one, and at every clean shutdown
    checkpoint_interval: float = 300.0


@dataclass(frozen=True)
class HubConfig:
    file: str
    name: str
    state_dir: str
    log_level: str
    log_format: str
    journal: JournalSettings
    presence: PresenceSettings
    alarm_defaults: dict[str, Threshold]
    models: dict[str, TypedSection]
    transports: dict[str, TypedSection]
    sinks: dict[str, TypedSection]
    devices: list[DeviceSettings]
    provisioning: list[ProvisionRule]
    provisioning_enabled: bool
    gc: GcSettings = GcSettings()
    audit: AuditSettings | None = None
    api: ApiSettings | None = None  # the northbound API (hub.api.settings); None: off
    cluster: ClusterSettings | None = None  # NATS for --role edge|core (hub.cluster.settings)
    #: SHA-256 (hex) of the file's bytes as loaded; "" for a configuration built in memory
    sha256: str = ""


# ---------------------------------------------------------------- loading


def load_config(path: str, plugins: HubPlugins) -> HubConfig:
    """Read, check and return the configuration at ``path``; raise :class:`ConfigError`
    listing every problem otherwise."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
        data = yaml.load(raw, Loader=YAML_LOADER)  # noqa: S506 (a safe loader)
    except OSError as e:
        raise ConfigError([f"{path}: cannot read: {e.strerror}"]) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError([f"{path}:{where}: not valid YAML: {problem}"]) from None
    config = check_config(data, path, plugins)
    # the audit log records which configuration the hub ran with
    return dataclasses.replace(config, sha256=hashlib.sha256(raw).hexdigest())


def check_config(data: Any, file: str, plugins: HubPlugins) -> HubConfig:
    """Check an already-parsed document; ``file`` names it in errors and anchors relative
    paths (the state directory, secret files)."""
    checker = Checker(plugins)
    root = Path(file)
    base = os.path.dirname(os.path.abspath(file))
    data = _resolve_secrets(data, root, base, checker)
    top = Section(checker, root, data)

    hub = top.section("hub")
    name = hub.get("name", string(NAME, "a name of letters, digits, _ and -"), "hub")
    # a wrong value is reported; the default stands in so the other keys are still checked
    state_dir = _path(base, hub.get("state_dir", string(), "var") or "var")
    log_level = hub.get("log_level", choice("debug", "info", "warn", "error"), "info")
    log_format = hub.get("log_format", choice("text", "json"), "text")
    gc = _gc(hub.section("gc"))
    hub.finish()

    journal = _journal(top.section("journal"), state_dir, base)
    audit = _audit(top.section("audit"), state_dir, base)
    api = parse_api(top, state_dir, base)
    cluster = parse_cluster(top, name, state_dir)
    presence = _presence(top.section("presence"))
    alarm_defaults = _alarm_defaults(top.section("alarms"))

    models = _typed(top.section("models"), plugins.models, "device model")
    transports = _typed(top.section("transports"), plugins.transports, "transport")
    sinks = _typed(top.section("sinks"), plugins.sinks, "sink")
    sinks = _default_rollups(top, sinks, plugins.sinks)

    known_models = set(models) | set(plugins.models)
    devices = _devices(top, checker, alarm_defaults, known_models, transports, plugins)
    _direct_models(devices, models, plugins, checker, top.path)
    prov = top.section("provisioning")
    prov_enabled = prov.get("enabled", boolean, False)
    rules = []
    raw_rules = prov.raw("rules", []) or []
    if not isinstance(raw_rules, list):
        checker.error(prov.path / "rules", f"expected a list of rules, got {describe(raw_rules)}")
        raw_rules = []
    for i, raw in enumerate(raw_rules):
        rule_section = Section(checker, prov.path / "rules" / i, raw)
        rules.append(_rule(rule_section, known_models, transports))
    prov.finish()
    top.finish()
    checker.raise_if_any()
    return HubConfig(
        file=file,
        name=name,
        state_dir=state_dir,
        log_level=log_level,
        log_format=log_format,
        journal=journal,
        presence=presence,
        alarm_defaults=alarm_defaults,
        models=models,
        transports=transports,
        sinks=sinks,
        devices=devices,
        provisioning=rules,
        provisioning_enabled=prov_enabled,
        gc=gc,
        audit=audit,
        api=api,
        cluster=cluster,
    )


def _gc(s: Section) -> GcSettings:
    freeze = s.get("freeze", boolean, GcSettings.freeze)
    threshold = s.raw("threshold", list(GcSettings.threshold))
    if not (isinstance(threshold, list) and len(threshold) == 3 and all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in threshold)):
        s.checker.error(s.path / "threshold", f"expected three counts [young, middle, old] "
                        f"(integers >= 0; 0 turns automatic collection off), got "
                        f"{describe(threshold)}")
        threshold = list(GcSettings.threshold)
    s.finish()
    return GcSettings(freeze, tuple(threshold))  # type: ignore[arg-type]


def _path(base: str, path: str) -> str:
    """``path`` as written in the file at ``base``: relative to that file's directory."""
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))


def _or(value: Any, default: Any) -> Any:
    """A checked value, or ``default`` where the check failed (its error is recorded)."""
    return default if value is None else value


def _journal(s: Section, state_dir: str, base: str) -> JournalSettings:
    path = s.get("path", string(), None)
    path = _path(base, path) if path else os.path.join(state_dir, "journal.sqlite")
    max_mb = s.get("max_size_mb", number(1), None)
    days = s.get("retention_days", number(1), 730)
    interval_ms = _or(s.get("commit_interval_ms", number(0, 1000, "ms"),
                            JournalSettings.commit_interval * 1000),
                      JournalSettings.commit_interval * 1000)
    out = JournalSettings(
        path=path,
        commit_interval=interval_ms / 1000,
        max_batch=s.get("max_batch", integer(1, 1_000_000), JournalSettings.max_batch),
        max_bytes=int(max_mb * 1024 * 1024) if max_mb else None,
        warn_ratio=s.get("warn_ratio", number(0.1, 1), 0.9),
        retention=days * 86400 if days else None,
        synchronous=s.get("synchronous", choice("normal", "full"), "normal"),
        prune_interval=s.get("prune_interval", number(1), 60),
    )
    s.finish()
    return out


def _audit(s: Section, state_dir: str, base: str) -> AuditSettings:
    path = s.get("path", string(), None)
    path = _path(base, path) if path else os.path.join(state_dir, "audit.sqlite")
    key_file = s.get("key_file", string(), None)
    if key_file is None:
        key_file = os.path.join(state_dir, "audit_key.pem")
    else:
        key_file = _path(base, key_file)  # like {file: ...}: next to the config
    # only the hub's user may read the key: other users' `hub events` must still load this
    if os.path.exists(key_file) and os.access(key_file, os.R_OK):
        from hub.audit.keys import AuditKeyError, load_private

        try:
            load_private(key_file)
        except AuditKeyError as e:
            s.checker.error(s.path / "key_file", f"expected an Ed25519 private key in PEM "
                            f"(or no file, to have one generated): {e}")
    out = AuditSettings(
        path=path,
        key_file=key_file,
        checkpoint_every=s.get("checkpoint_every", integer(1, 1_000_000),
                               AuditSettings.checkpoint_every),
        checkpoint_interval=s.get("checkpoint_interval", number(1, 86400, "s"),
                                  AuditSettings.checkpoint_interval),
    )
    s.finish()
    return out


def _presence(s: Section) -> PresenceSettings:
    out = PresenceSettings(
        heartbeat_interval=s.get("heartbeat_interval", number(1, 86400 * 7), 60),
        timeout_count=s.get("timeout_count", integer(1, 100), 3),
    )
    s.finish()
    return out


def _default_rollups(top: Section, sinks: dict[str, TypedSection],
                     types: dict[str, Any]) -> dict[str, TypedSection]:
    """Rollups run by default (README "Rollups, safety grading and reports"): a ``rollups``
    sink with default options unless one is configured; ``enabled: false`` turns it off."""
    if "rollups" not in types:
        return sinks
    if not any(t.type == "rollups" for t in sinks.values()):
        path = top.path / "sinks" / "rollups"
        options = top.checker.check(path, types["rollups"].check_options,
                                    Section(top.checker, path, {}))
        sinks = {**sinks, "rollups": TypedSection("rollups", "rollups", options)}
    return {k: t for k, t in sinks.items() if getattr(t.options, "enabled", True)}


def _typed(s: Section, types: dict[str, Any], what: str) -> dict[str, TypedSection]:
    out = {}
    for name, raw in s.items():
        path = s.path / name
        sec = Section(s.checker, path, raw)
        if not s.checker.check(path, string(NAME, "a name of letters, digits, _ and -"), name):
            continue
        type_name = sec.get("type", string())
        if type_name is None:
            continue
        t = types.get(type_name)
        if t is None:
            known = ", ".join(sorted(types)) or "none installed"
            s.checker.error(path / "type", f"{type_name!r} is not a known {what} type "
                            f"(known: {known}; see `hub plugins`)")
            continue
        sec._used.add("type")
        interval = count = None
        if what == "device model":
            interval, count = _heartbeat(sec.section("heartbeat"))
        options = s.checker.check(path, t.check_options, sec)
        out[name] = TypedSection(name, type_name, options, interval, count)
    return out


def _devices(top: Section, checker: Checker, defaults: dict[str, Threshold],
             models: set[str], transports: dict[str, TypedSection],
             plugins: HubPlugins) -> list[DeviceSettings]:
    raw = top.raw("devices", [])
    path = top.path / "devices"
    if raw is None:
        return []
    if not isinstance(raw, list):
        checker.error(path, f"expected a list of devices, got {describe(raw)}")
        return []
    out: list[DeviceSettings] = []
    seen_ids: dict[str, int] = {}
    seen_addr: dict[tuple[str, Any], str] = {}
    for i, item in enumerate(raw):
        s = Section(checker, path / i, item)
        dev_id = s.get("id", string(DEVICE_ID, "a device id of letters, digits, _ . : -"))
        model = s.get("model", string())
        if model is not None and model not in models:
            checker.error(s.path / "model", f"{model!r} is neither a configured model "
                          f"(models.*) nor a device model type (see `hub plugins`)")
        transport = s.get("transport", string(), None)
        address_key = None
        address = s.raw("address", None)
        if transport is not None:
            if transport not in transports:
                checker.error(s.path / "transport", f"{transport!r} is not a configured "
                              f"transport (known: {', '.join(transports) or 'none'})")
            else:
                ttype = plugins.transports[transports[transport].type]
                if address is None:
                    checker.error(s.path / "address", "is required for a device on a transport")
                else:
                    address_key = checker.check(s.path / "address", ttype.check_address, address)
        elif address is not None:
            checker.error(s.path / "transport", "is required when an address is given")
        alarms = device_alarms(s.section("alarms"), defaults)
        interval, count = _heartbeat(s.section("heartbeat"))
        rated = device_rating(s)
        d = DeviceSettings(
            id=dev_id,
            model=model,
            transport=transport,
            address=address,
            address_key=address_key,
            name=s.get("name", string(), dev_id),
            location=s.get("location", string(), ""),
            project=s.get("project", string(), ""),
            group=s.get("group", string(), ""),
            alarms={k: v for k, v in alarms.items() if v.enabled},
            heartbeat_interval=interval,
            timeout_count=count,
            rated=rated,
        )
        s.finish()
        if dev_id is None:
            continue
        if dev_id in seen_ids:
            checker.error(s.path / "id",
                          f"{dev_id!r} is already used by devices[{seen_ids[dev_id]}]")
        seen_ids[dev_id] = i
        if transport is not None and address_key is not None:
            key = (transport, address_key)
            if key in seen_addr:
                checker.error(s.path / "address", f"is already the address of device "
                              f"{seen_addr[key]!r} on transport {transport!r}")
            seen_addr[key] = dev_id
        out.append(d)
    return out


def _direct_models(devices: list[DeviceSettings], models: dict[str, TypedSection],
                   plugins: HubPlugins, checker: Checker, root: Path) -> None:
    """A device may name a model *type* instead of a configured model; that only works for
    types without required options, which is checked here rather than when the hub builds."""
    for i, d in enumerate(devices):
        if d.model in models or d.model not in plugins.models:
            continue
        inner = Checker()
        options = inner.check(root, plugins.models[d.model].check_options,
                              Section(inner, root / "models" / d.model, {}))
        if inner.errors:
            checker.error(root / "devices" / i / "model",
                          f"model type {d.model!r} needs options; declare a model under "
                          f"models: with type: {d.model} (e.g. {inner.errors[0]})")
            continue
        models[d.model] = TypedSection(d.model, d.model, options)


def device_alarms(al: Section, defaults: dict[str, Threshold]) -> dict[str, Threshold]:
    """A device's ``alarms:`` over the hub-wide defaults (enabled or not); also what the API
    checks a stored device's thresholds with."""
    alarms: dict[str, Threshold] = dict(defaults)
    for rule, raw in al.items():
        if rule not in ALARM_RULES:
            al.checker.error(al.path / rule,
                             f"is not an alarm type; one of {', '.join(ALARM_RULES)}")
            continue
        base = defaults.get(rule)
        alarms[rule] = threshold(rule, Section(al.checker, al.path / rule, raw), base,
                                 base_ratio(base))
    return alarms


def stored_device_settings(raw: dict[str, Any], alarm_defaults: Any
                           ) -> tuple[dict[str, Threshold], float | None, int | None, Any]:
    """The ``alarms`` (enabled ones, over ``alarm_defaults``), ``heartbeat`` and ``rated``
    of a device kept in the platform store, checked as a YAML device's; ValueError names
    every problem (key paths under ``settings``)."""
    checker = Checker()
    root = Section(checker, Path("settings"), raw)
    alarms = device_alarms(root.section("alarms"), alarm_defaults)
    interval, count = _heartbeat(root.section("heartbeat"))
    rated = device_rating(root)
    root.finish()
    if checker.errors:
        raise ValueError("; ".join(e.split(": ", 1)[-1] for e in checker.errors))
    return {k: v for k, v in alarms.items() if v.enabled}, interval, count, rated


def device_rating(s: Section) -> Any:
    """A device's ``rated`` current (README "Load rate"; also the API's check of a stored
    device's): amperes, or ``{current | channels | capacity_kva, voltage, phases}``."""
    from hub.analysis.load import rating_from

    raw = s.raw("rated", None)
    if raw is None:
        return None
    path = s.path / "rated"
    try:
        return rating_from(raw, str(path))
    except ValueError as e:  # it names the key path below ``rated`` itself
        s.checker.errors.append(f"{path.file}: {e}")
    return None


def device_heartbeat(hb: Section) -> tuple[float | None, int | None]:
    """A device's ``heartbeat:`` (also the API's check of a stored device's)."""
    return _heartbeat(hb)


def _heartbeat(hb: Section) -> tuple[float | None, int | None]:
    """``heartbeat: {interval, timeout_count}`` of a device or a model (T/CFPA 023 6.3.3 i)."""
    interval = hb.get("interval", number(1, 86400 * 7, "s"), None)
    count = hb.get("timeout_count", integer(1, 100), None)
    hb.finish()
    return interval, count


def _rule(s: Section, models: set[str], transports: dict[str, TypedSection]) -> ProvisionRule:
    transport = s.get("transport", string())
    if transport is not None and transport not in transports:
        s.checker.error(s.path / "transport", f"{transport!r} is not a configured transport")
    model = s.get("model", string())
    if model is not None and model not in models:
        s.checker.error(s.path / "model", f"{model!r} is not a known model")
    rule = ProvisionRule(
        transport=transport,
        match=s.get("match", regex),
        model=model,
        project=s.get("project", string(), ""),
        name=s.get("name", _name_template, "{id}"),
    )
    s.finish()
    return rule


def _name_template(v: Any) -> str:
    """A provisioned device's name: ``{id}`` is the only field (checked here because a bad
    template would otherwise fail in a transport's callback, on the first unknown device)."""
    text = string()(v)
    try:
        text.format(id="861234567890123")
    except (KeyError, IndexError, ValueError, AttributeError) as e:
        raise Invalid(f"{text!r} is not a name template: only {{id}} may be used ({e!r})") from None
    return text


__all__ = ["ConfigError", "HubConfig", "Invalid", "Secret", "load_config", "check_config"]
