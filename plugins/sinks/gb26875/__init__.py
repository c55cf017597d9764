"""GB/T 26875.3-2011: the hub as a user information transmission device (UITD).

* :mod:`.codec`: frames and application data, sans-IO.
* :mod:`.mapping`: canonical records → GB/T 26875.3 objects (sans-IO).
* :mod:`.options`: the sink's options; :mod:`.sink`: the sink service.
* :mod:`.centre`: ``hub gb26875 centre``, a monitoring-centre receiver for commissioning
  and tests.

Configuration (``sinks.<name>`` in ``hub.yaml``)::

    sinks:
      fire-centre:
        type: gb26875
        centres: [{host: 10.0.0.5, port: 9000}]   # several: each its own cursor
        source_address: 0x0000000a0001             # 6 bytes, ours
        destination_address: 0
        protocol_version: "1.1"  # the frames' version bytes (01 01, as the standard's
                                 # samples); "1.0" for a centre that wants 01 00
        timeout: 10            # s, at most 10 (GB/T 26875.3 §6.5)
        retries: 3
        liveness_interval: 60  # s between type 21 (or liveness_type: 28) uploads
        system_type: 129       # user-defined: the 2011 table has no electrical-fire code
        system_address: 1
        system_addresses: {campus-a: 2}           # per project
        component_addresses: {efd-1/T1: 0x10001}  # else position << 16 | channel
        analog_types: {residual_current: {code: 128, resolution: 1}}
        readings: false        # true: every mapped reading as type 3, not only alarm values
"""

from __future__ import annotations

from typing import Any

from hub import hookimpl
from hub.contracts import SinkType
from plugins.sinks.gb26875.centre import add_commands
from plugins.sinks.gb26875.options import GBOptions, check_options
from plugins.sinks.gb26875.sink import GBSink


@hookimpl
def hub_add_commands(subparsers: Any) -> None:
    add_commands(subparsers)


@hookimpl
def hub_register_sink_types() -> list[SinkType]:
    return [SinkType("gb26875", GBSink, check_options,
                     "GB/T 26875.3 upload to fire-alarm monitoring centres")]


__all__ = ["GBOptions", "GBSink", "check_options"]
