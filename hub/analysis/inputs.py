"""The inputs of grading rules 6-8 — open hazards, overdue rectifications, readings near
the set points — gathered by one function, :func:`grading_inputs`, for everything that
grades: the API's grade routes, the reports the API and its schedule make, ``hub report``,
and the daily grades the ``rollups`` sink keeps (:mod:`hub.analysis.schedule`).

What differs between them is only where the inputs come from, a :class:`GradingSources`:

* :func:`store_sources`: the platform store's hazards and the set points of the
  configured devices and of those created through the API (the API, ``hub report`` when
  the store exists);
* :func:`config_sources`: the configuration's set points alone (no platform store).

The rollups sink grades on its own timer and knows neither the store nor the API; the API
service registers its sources for the hub's journal (:func:`register`) and
:func:`hub.analysis.schedule.grade_days` asks :func:`sources_for` that journal, so the
scheduled grades deduct what the API's do. Without an API (no platform store, so no
hazards) it finds none and grades from the events alone.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hub.analysis.grading import Deduction, GradingScheme, extra_deductions

SetPoints = dict[str, dict[str, float]]
#: hazards (hub.store.hazards.Hazard) of the projects (None: all) found before ``until``
HazardSource = Callable[[set[str] | None, float], Sequence[Any]]

#: hazards read per grading; the store's own cap on a listing
HAZARD_LIMIT = 100_000


def _no_hazards(projects: set[str] | None, until: float) -> Sequence[Any]:
    return ()


@dataclass(frozen=True)
class GradingSources:
    hazards: HazardSource = _no_hazards
    set_points: Callable[[], Mapping[str, Mapping[str, float]]] = field(
        default=lambda: {})


def grading_inputs(sources: GradingSources | None, devices: Sequence[str], since: float,
                   until: float, scheme: GradingScheme, rollups: Any = None,
                   project: str | None = None
                   ) -> tuple[dict[str, list[Deduction]], list[Deduction]]:
    """Rules 6-8 for ``devices`` over ``[since, until)``: (deductions per device, of the
    whole project). ``project``: only its hazards (None: every project's, for grading
    devices of several); ``rollups``: a :class:`hub.rollups.RollupStore` for rule 8."""
    s = sources or GradingSources()
    hazards = s.hazards(None if project is None else {project}, until)
    return extra_deductions(devices, since, until, scheme, hazards, rollups,
                            s.set_points())


def stored_set_points(stored_devices: Iterable[Any]) -> SetPoints:
    """Set points of temperature and residual current kept with devices created through
    the API (their ``settings.alarms``)."""
    out: SetPoints = {}
    for sd in stored_devices:
        alarms = (getattr(sd, "settings", None) or {}).get("alarms") or {}
        points = {q: float(alarms[q]["alarm"]) for q in ("temperature", "residual_current")
                  if isinstance(alarms.get(q), dict) and alarms[q].get("alarm") is not None
                  and alarms[q].get("enabled", True)}
        if points:
            out[sd.id] = points
    return out


def merged_set_points(configured: Mapping[str, dict[str, float]],
                      stored_devices: Iterable[Any]) -> SetPoints:
    """The configuration's set points, and the stored devices' for those it lacks."""
    out = dict(configured)
    for dev, points in stored_set_points(stored_devices).items():
        out.setdefault(dev, points)
    return out


def config_sources(set_points: Mapping[str, dict[str, float]]) -> GradingSources:
    return GradingSources(set_points=lambda: set_points)


def store_sources(store: Any, configured: Mapping[str, dict[str, float]]) -> GradingSources:
    """Hazards and stored devices from a :class:`hub.store.PlatformStore` (read at each
    grading: hazards move and devices come and go), set points of the configuration."""
    def hazards(projects: set[str] | None, until: float) -> Sequence[Any]:
        return store.hazards(projects, until=until, limit=HAZARD_LIMIT)
    return GradingSources(hazards, lambda: merged_set_points(configured, store.devices()))


# -- the sources of a running hub, for graders that only hold its journal -----------------

_registered: weakref.WeakKeyDictionary[Any, GradingSources] = weakref.WeakKeyDictionary()


def register(journal: Any, sources: GradingSources) -> None:
    _registered[journal] = sources


def unregister(journal: Any) -> None:
    _registered.pop(journal, None)


def sources_for(journal: Any) -> GradingSources | None:
    try:
        return _registered.get(journal)
    except TypeError:  # not weakly referenceable: nothing was registered for it
        return None
