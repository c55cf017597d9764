"""Options of the ``sms`` sink, checked with the configuration (errors name key paths)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hub.model import Level
from hub.validate import Invalid, Section, describe, integer, number, string
from plugins.sinks.sms.phones import normalise
from plugins.sinks.sms.routing import Route
from plugins.sinks.sms.storm import StormSettings
from plugins.sinks.sms.templates import (
    EVENT_FIELDS,
    MESSAGE_KINDS,
    SUMMARY_FIELDS,
    TEMPLATE_NAMES,
    check_template,
)

GROUP_NAME = r"[A-Za-z0-9_\-\u4e00-\u9fff]{1,64}"


@dataclass(frozen=True)
class SmsOptions:
    provider_type: str
    provider: Any  # what the provider's check_options returned
    recipients: dict[str, tuple[str, ...]]
    routes: tuple[Route, ...]
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    templates: dict[str, str] = field(default_factory=dict)
    max_parts: int = 4
    storm: StormSettings = StormSettings()
    retry_initial: float = 2.0
    retry_max: float = 300.0
    send_timeout: float = 30.0
    read_ahead: int = 500


def _provider(s: Section) -> tuple[str, Any]:
    sec = s.section("provider")
    if "provider" not in s.data:
        s.checker.error(s.path / "provider", "is required ({type: <provider>, ...}; see "
                        "`hub plugins` for the SMS providers installed)")
        return "", None
    type_name = sec.get("type", string())
    plugins = s.checker.plugins
    types = getattr(plugins, "sms_providers", None) or {}
    if type_name is None:
        return "", None
    if type_name not in types:
        known = ", ".join(sorted(types)) or "none installed"
        s.checker.error(sec.path / "type", f"{type_name!r} is not a known SMS provider "
                        f"(known: {known}; see `hub plugins`)")
        return type_name, None
    return type_name, s.checker.check(sec.path, types[type_name].check_options, sec)


def _recipients(s: Section) -> dict[str, tuple[str, ...]]:
    sec = s.section("recipients")
    out: dict[str, tuple[str, ...]] = {}
    if not sec.data:
        s.checker.error(s.path / "recipients", "expected recipient groups "
                        "({name: [phone, ...]}), got nothing")
    for name, phones in sec.items():
        path = sec.path / name
        if not s.checker.check(path, string(GROUP_NAME, "a group name"), name):
            continue
        if not isinstance(phones, list) or not phones:
            s.checker.error(path, f"expected a non-empty list of phone numbers, got "
                            f"{describe(phones)}")
            continue
        got = [s.checker.check(path / i, normalise, p) for i, p in enumerate(phones)]
        out[name] = tuple(dict.fromkeys(p for p in got if p))
    return out


def _names(allowed: tuple[str, ...] | None, what: str):
    def check(v: Any) -> frozenset[str]:
        items = [v] if isinstance(v, str) else v
        if not isinstance(items, list) or not items:
            raise Invalid(f"expected a list of {what}, got {describe(v)}")
        for x in items:
            if not isinstance(x, str) or (allowed is not None and x not in allowed):
                raise Invalid(f"{describe(x)} is not one of {', '.join(allowed or ())}"
                              if allowed else f"expected {what} as strings, got {describe(x)}")
        return frozenset(items)
    return check


def _groups_ref(recipients: dict[str, tuple[str, ...]]):
    def check(v: Any) -> tuple[str, ...]:
        items = [v] if isinstance(v, str) else v
        if not isinstance(items, list):
            raise Invalid(f"expected a list of recipient groups, got {describe(v)}")
        for x in items:
            if x not in recipients:
                raise Invalid(f"{describe(x)} is not a recipient group (recipients: "
                              f"{', '.join(recipients) or 'none'})")
        return tuple(items)
    return check


def _routes(s: Section, recipients: dict[str, tuple[str, ...]],
            escalate_after: float) -> tuple[Route, ...]:
    raw = s.raw("routes", None)
    if not isinstance(raw, list) or not raw:
        s.checker.error(s.path / "routes", f"expected a non-empty list of routes "
                        f"({{kinds, levels, projects, groups, notify, escalate}}), got "
                        f"{describe(raw)}")
        return ()
    out = []
    levels = tuple(lv.value for lv in Level)
    for i, item in enumerate(raw):
        r = Section(s.checker, s.path / "routes" / i, item)
        groups = _groups_ref(recipients)
        route = Route(
            notify=r.get("notify", groups),
            kinds=r.get("kinds", _names(MESSAGE_KINDS, "message kinds"), None),
            levels=r.get("levels", _names(levels, "levels"), None),
            projects=r.get("projects", _names(None, "projects"), None),
            groups=r.get("groups", _names(None, "device groups"), None),
            escalate=r.get("escalate", groups, ()),
            escalate_after=r.get("escalate_after", number(1, 86400, "s"), escalate_after),
        )
        r.finish()
        out.append(route)
    return tuple(out)


def _tz(v: Any) -> ZoneInfo:
    try:
        return ZoneInfo(string()(v))
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(f"{describe(v)} is not an IANA time zone such as Asia/Shanghai") from None


def _templates(s: Section) -> dict[str, str]:
    sec = s.section("templates")
    out = {}
    for name, text in sec.items():
        if name not in TEMPLATE_NAMES:
            s.checker.error(sec.path / name, f"is not a template; one of "
                            f"{', '.join(TEMPLATE_NAMES)}")
            continue
        checked = s.checker.check(sec.path / name, check_template, name, text)
        if checked:
            out[name] = checked
    return out


def _rate_limits(v: Any) -> tuple[tuple[int, float], ...]:
    if not isinstance(v, list):
        raise Invalid(f"expected a list of {{count, per}}, got {describe(v)}")
    out = []
    for i, x in enumerate(v):
        if not isinstance(x, dict) or set(x) != {"count", "per"}:
            raise Invalid(f"[{i}]: expected {{count: messages, per: seconds}}, got "
                          f"{describe(x)}")
        try:
            out.append((integer(1, 10000)(x["count"]), number(1, 86400 * 31, "s")(x["per"])))
        except Invalid as e:
            raise Invalid(f"[{i}]: {e}") from None
    return tuple(out)


def kinds_sent(routes: tuple[Route, ...]) -> dict[str, int]:
    """Every message kind the sink can hand the provider, each with the index of the first
    route that makes it. Escalations repeat a route's own kinds; storm control turns any
    two texts waiting for one phone into a ``summary``, so with any route at all a summary
    can go out (index -1: no route asks for it, storm control makes it)."""
    out: dict[str, int] = {}
    for i, r in enumerate(routes):
        for kind in MESSAGE_KINDS:
            if r.kinds is None or kind in r.kinds:
                out.setdefault(kind, i)
    if out:
        out["summary"] = -1
    return out


def _provider_templates(s: Section, provider: Any, routes: tuple[Route, ...]) -> None:
    """A provider that sends only pre-approved templates (its checked options have
    ``templates``: message kind -> template, each with optional ``params``) would refuse
    for good every text of a kind it has no template for: an alarm never received. So a
    missing kind, or a parameter no message of that kind has, is a configuration error."""
    templates = getattr(provider, "templates", None)
    if not isinstance(templates, Mapping):
        return
    path = s.path / "provider" / "templates"
    for kind, route in kinds_sent(routes).items():
        if kind in templates:
            continue
        if route < 0:
            why = ("storm control sends one summary when several texts wait for a phone (a "
                   f"storm, a rate limit, a retry); add 'summary: <template>' with fields "
                   f"from {', '.join(sorted(SUMMARY_FIELDS))}")
        else:
            by = " (it names no kinds: all of them)" if routes[route].kinds is None else ""
            why = (f"routes[{route}] sends {kind} messages{by}; add '{kind}: <template>' or "
                   f"leave {kind} out of the routes' kinds")
        s.checker.error(path, f"no template for message kind {kind!r}, so those texts "
                        f"would fail for good: {why}")
    for kind, template in templates.items():
        allowed = SUMMARY_FIELDS if kind == "summary" else EVENT_FIELDS
        for name in getattr(template, "params", None) or ():
            if name not in allowed:
                s.checker.error(path / kind / "params", f"{name!r} is not a field of {kind} "
                                f"messages; known: {', '.join(sorted(allowed))}")


def check_options(s: Section) -> SmsOptions:
    provider_type, provider = _provider(s)
    recipients = _recipients(s)
    escalate_after = s.get("escalate_after", number(1, 86400, "s"), 600.0)
    routes = _routes(s, recipients, escalate_after)
    defaults = StormSettings()
    storm = StormSettings(
        dedup_window=s.get("dedup_window", number(0, 86400, "s"), defaults.dedup_window),
        summary_after=s.get("summary_after", integer(1, 1000), defaults.summary_after),
        summary_window=s.get("summary_window", number(1, 86400, "s"), defaults.summary_window),
        rate_limits=s.get("rate_limits", _rate_limits, defaults.rate_limits),
    )
    opts = SmsOptions(
        provider_type=provider_type,
        provider=provider,
        recipients=recipients,
        routes=routes,
        tz=s.get("time_zone", _tz, ZoneInfo("Asia/Shanghai")),
        templates=_templates(s),
        max_parts=s.get("max_parts", integer(1, 10), 4),
        storm=storm,
        retry_initial=s.get("retry_initial", number(0.01, 3600, "s"), 2.0),
        retry_max=s.get("retry_max", number(0.01, 86400, "s"), 300.0),
        send_timeout=s.get("send_timeout", number(1, 600, "s"), 30.0),
        read_ahead=s.get("read_ahead", integer(1, 10000), 500),
    )
    _provider_templates(s, provider, routes)
    if opts.retry_max is not None and opts.retry_initial is not None \
            and opts.retry_max < opts.retry_initial:
        s.checker.error(s.path / "retry_max", "is below retry_initial")
    s.finish()
    return opts
