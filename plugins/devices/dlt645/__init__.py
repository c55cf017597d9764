"""Built-in plugin: the ``dlt645`` device model, DL/T 645-2007 meters driven by a YAML map of
data identifiers.

Configure one model per map in ``hub.yaml``::

    models:
      meter:
        type: dlt645
        map: conf/devices/dlt645-meter-example.yaml
        password: {env: METER_PASSWORD}     # only for trip/close the map enables
        operator: "00000001"

Options:

* ``map`` (required): the data-identifier map, relative to the working directory (or to the
  directory of ``hub.yaml``), loaded and checked with the configuration.
* ``poll_interval`` (s): overrides the map's.
* ``password``: the meters' 6-digit (hexadecimal) password for 1CH trip/close, only as
  ``{env: NAME}`` or ``{file: PATH}``; required when the map enables a command.
* ``password_level`` (PA, default 2), ``operator`` (8 hex digits, the operator code the
  meter records; a secret too if you like), ``command_validity`` (s, default 300: the
  command's deadline N3..N8), ``utc_offset`` (h, default 8: the meters' clocks),
  ``wakeup`` (FE bytes before each request, default 4).
* ``response_timeout`` (s): how long the DTU transport waits for a meter's reply (default:
  the transport's ``response_timeout``); meters at 2400 baud are slower than Modbus slaves.
* ``time_sync_interval`` (s, default off): broadcast the meters' time (08H) this often on
  every DTU line with a meter of this model, and once when the DTU registers.

The wire codec is :mod:`plugins.protocols.dlt645`; the map schema :mod:`.datamap`; the model
:mod:`.model`.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from hub import hookimpl
from hub.config import Secret
from hub.contracts import DeviceModelType, register_unit_form
from hub.validate import Invalid, Section, describe, integer, number, string
from plugins.devices.dlt645.datamap import DataMap, load_map
from plugins.devices.dlt645.model import Dlt645Model, Dlt645Options, Poll

register_unit_form(str, Dlt645Model.check_unit)  # a meter address in a DTU address

__all__ = ["DataMap", "Dlt645Model", "Dlt645Options", "Poll", "check_options", "factory",
           "load_map"]


def _password(v: Any) -> str | None:
    if v is None:  # an {env:}/{file:} that could not be read: already reported
        return None
    if not isinstance(v, Secret):
        raise Invalid("write the password as {env: NAME} or {file: PATH}, not in the file "
                      "itself" if isinstance(v, str) else
                      f"expected {{env: NAME}} or {{file: PATH}}, got {describe(v)}")
    string("[0-9A-Fa-f]{6}", "6 hexadecimal digits (the meter's password)")(str(v))
    return v


def _operator(v: Any) -> str:
    if v is not None and not isinstance(v, str):
        raise Invalid(f"expected 8 hexadecimal digits in quotes, got {describe(v)}")
    return string("[0-9A-Fa-f]{8}", "8 hexadecimal digits (the operator code)")(v)


_OPTIONAL = ("response_timeout", "time_sync_interval")  # None: off, or the transport's


def check_options(section: Section) -> Dlt645Options | None:
    """Check ``models.<name>`` of type ``dlt645``: its options and its map file."""
    path = section.get("map", string())
    poll_interval = section.get("poll_interval", number(0.1, 86400, "s"), None)
    password = section.get("password", _password, None)
    fields: dict[str, Any] = dict(
        password_level=section.get("password_level", integer(0, 255), 2),
        operator=section.get("operator", _operator, "00000000"),
        command_validity=section.get("command_validity", number(10, 86400, "s"), 300.0),
        utc_offset=section.get("utc_offset", number(-12, 14, "h"), 8.0),
        wakeup=section.get("wakeup", integer(0, 4), 4),
        response_timeout=section.get("response_timeout", number(0.05, 60, "s"), None),
        time_sync_interval=section.get("time_sync_interval", number(60, 86400 * 7, "s"),
                                       None),
    )
    section.finish()
    if path is None:
        return None
    base = os.path.dirname(section.path.file)
    datamap = load_map(path, section.checker, at=section.path / "map", base=base)
    if datamap is None:
        return None
    if poll_interval is not None:
        datamap = replace(datamap, poll_interval=poll_interval)
    if datamap.commands and password is None and "password" not in section:
        section.checker.error(section.path / "password", "is required: the map enables "
                              f"{' and '.join(sorted(datamap.commands))} (1CH), which the "
                              "meters accept only with their password")
    return Dlt645Options(datamap, password, **{k: v for k, v in fields.items()
                                               if v is not None or k in _OPTIONAL})


def factory(options: Dlt645Options | None) -> Dlt645Model:
    """Build the model from checked options."""
    if options is None:
        raise ValueError("the dlt645 model needs a data-identifier map: declare it under "
                         "models: with type: dlt645 and map: PATH")
    return Dlt645Model(options)


@hookimpl
def hub_register_device_models() -> list[DeviceModelType]:
    return [DeviceModelType("dlt645", factory, check_options,
                            "DL/T 645-2007 meters described by a YAML data-identifier map")]
