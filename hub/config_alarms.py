"""Alarm set points in ``hub.yaml`` (``alarms.defaults`` and each device's ``alarms``),
checked against T/CFPA 023-2023 table 1; part of :mod:`hub.config`."""

from __future__ import annotations

import math

from hub.alarms import Threshold
from hub.model import ALARM_RULES, QUANTITIES
from hub.validate import Section, boolean, number

_RULE_KEYS = ("alarm", "warning", "warning_ratio", "hysteresis", "delay", "clear_delay", "enabled")


def threshold(rule: str, s: Section, base: Threshold | None,
              warning_ratio: float) -> Threshold:
    """One rule's threshold; keys missing here come from ``base`` (the defaults)."""
    spec = ALARM_RULES[rule]
    unit = QUANTITIES[spec.quantity].unit
    set_point = number(spec.low, spec.high, unit, spec.table)
    enabled = s.get("enabled", boolean, base.enabled if base else True)
    inherited = base.alarm if base is not None and not math.isnan(base.alarm) else None
    if inherited is not None:
        alarm = s.get("alarm", set_point, inherited)
    elif enabled:
        alarm = s.get("alarm", set_point)  # required: nothing to inherit
    else:
        # a rule switched off with no set point (overcurrent depends on each breaker)
        alarm = s.get("alarm", set_point, math.nan)
    ratio = s.get("warning_ratio", number(0.1, 0.99), warning_ratio)
    if "warning" in s:
        # a pre-alarm lies between the standard's range and the set point: above the range's
        # low end for a high alarm, below its high end for a low one
        warning = s.get("warning", number(spec.low if spec.direction == "high" else None,
                                          spec.high if spec.direction == "low" else None,
                                          unit=unit), None)
    elif "alarm" in s or base is None or "warning_ratio" in s:
        if ratio and alarm is not None and not math.isnan(alarm):
            # pre-alarm at a share of the set point; for a low alarm the same margin above it
            warning = alarm * ratio if spec.direction == "high" else alarm * (2 - ratio)
        else:
            warning = None
    else:
        warning = base.warning
    if alarm is not None and warning is not None and not math.isnan(alarm):
        wrong_side = warning >= alarm if spec.direction == "high" else warning <= alarm
        if wrong_side:
            s.checker.error(s.path / "warning", f"{warning:g} {unit} must be "
                            f"{'below' if spec.direction == 'high' else 'above'} the alarm "
                            f"set point {alarm:g} {unit}")
    hysteresis = s.get("hysteresis", number(0, unit=unit), base.hysteresis if base else 0.0)
    if "hysteresis" in s and hysteresis and alarm is not None and not math.isnan(alarm):
        # the clear level must be reachable, or an alarm once raised never clears (checked
        # where hysteresis is written, so an inherited value is reported once)
        clear = alarm - hysteresis if spec.direction == "high" else alarm + hysteresis
        if spec.direction == "high" and clear <= 0:
            s.checker.error(s.path / "hysteresis", f"{hysteresis:g} {unit} would put the clear "
                            f"level at {clear:g} {unit}; it must stay above 0 (the alarm "
                            f"clears below set point - hysteresis)")
        elif spec.direction == "low" and clear > spec.high:
            s.checker.error(s.path / "hysteresis", f"{hysteresis:g} {unit} would put the clear "
                            f"level at {clear:g} {unit}, above {spec.high:g} {unit}; the alarm "
                            f"clears above set point + hysteresis")
    delay = s.get("delay", number(0, 3600, "s"), base.delay if base else 0.0)
    clear_delay = s.get("clear_delay", number(0, 3600, "s"), base.clear_delay if base else 0.0)
    s.finish()
    if alarm is None:
        alarm = math.nan
    return Threshold(rule=rule, alarm=alarm, warning=warning, hysteresis=hysteresis or 0.0,
                     delay=delay or 0.0, clear_delay=clear_delay or 0.0, enabled=bool(enabled))


def alarm_defaults(s: Section) -> dict[str, Threshold]:
    ratio = s.get("warning_ratio", number(0, 0.99), 0.9)
    defaults = s.section("defaults")
    out = {}
    for rule, raw in defaults.items():
        if rule not in ALARM_RULES:
            s.checker.error(defaults.path / rule,
                            f"is not an alarm type; one of {', '.join(ALARM_RULES)}")
            continue
        out[rule] = threshold(rule, Section(s.checker, defaults.path / rule, raw), None, ratio)
    s.finish()
    return out


def base_ratio(base: Threshold | None) -> float:
    """The warning ratio implied by a default threshold, reused when a device overrides only
    the set point."""
    if base is None or base.warning is None or not base.alarm or math.isnan(base.alarm):
        return 0.0
    rule = ALARM_RULES[base.rule]
    ratio = base.warning / base.alarm if rule.direction == "high" else 2 - base.warning / base.alarm
    return ratio if 0 < ratio < 1 else 0.0  # an invalid default is reported once, not per device
