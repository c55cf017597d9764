"""Built-in plugin: the ``modbus_map`` device model, Modbus RTU driven by a YAML register map.

Configure one model per map in ``hub.yaml``::

    models:
      efd: {type: modbus_map, map: conf/devices/efd-example.yaml}

Options:

* ``map`` (required): the register map file, relative to the working directory (or, if
  not found there, to the directory of ``hub.yaml``). It is loaded and checked with the
  configuration, so ``hub check`` reports map errors with the map's file name and key path.
* ``poll_interval`` (s) and ``max_gap`` (registers): override the map's values, for one
  map used on links of different speed.

Modules, each with one job: :mod:`.registermap` (the map schema), :mod:`.commands`
(commands → writes), :mod:`.planner` (merged reads) and :mod:`.model`
(:class:`ModbusMapModel`, a :class:`hub.contracts.PolledDeviceModel`). The wire codec
(CRC, frames, framer, value types) is :mod:`plugins.protocols.modbus`, shared with the
transports and simulators. All pure: no sockets, no clock.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from hub import hookimpl
from hub.contracts import DeviceModelType, register_unit_form
from hub.validate import Section, integer, number, string
from plugins.devices.modbus.model import ModbusMapModel
from plugins.devices.modbus.planner import Poll
from plugins.devices.modbus.registermap import RegisterMap, load_map

register_unit_form(int, ModbusMapModel.check_unit)  # a slave number in a DTU address

__all__ = [
    "ModbusMapModel",
    "Poll",
    "RegisterMap",
    "check_options",
    "factory",
    "load_map",
]


def check_options(section: Section) -> RegisterMap | None:
    """Check ``models.<name>`` of type ``modbus_map``: load and check its map file."""
    path = section.get("map", string())
    poll_interval = section.get("poll_interval", number(0.1, 86400, "s"), None)
    max_gap = section.get("max_gap", integer(0, 1999), None)
    section.finish()
    if path is None:
        return None
    base = os.path.dirname(section.path.file)
    regmap = load_map(path, section.checker, at=section.path / "map", base=base)
    if regmap is None:
        return None
    overrides: dict[str, Any] = {}
    if poll_interval is not None:
        overrides["poll_interval"] = poll_interval
    if max_gap is not None:
        overrides["max_gap"] = max_gap
    return replace(regmap, **overrides)


def factory(options: RegisterMap | None) -> ModbusMapModel:
    """Build the model from checked options."""
    if options is None:
        raise ValueError("the modbus_map model needs a register map: declare it under "
                         "models: with type: modbus_map and map: PATH")
    return ModbusMapModel(options)


@hookimpl
def hub_register_device_models() -> list[DeviceModelType]:
    return [DeviceModelType("modbus_map", factory, check_options,
                            "Modbus RTU devices described by a YAML register map")]
