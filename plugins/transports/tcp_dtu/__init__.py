"""Built-in plugin: the ``tcp_dtu`` transport — 4G/GPRS transparent DTUs over TCP, with the
hub polling the slaves behind each one: any :class:`hub.contracts.PolledDeviceModel`
(Modbus RTU slaves, DL/T 645-2007 meters, or both on one line).

A DTU dials in, says who it is (a registration packet, see :mod:`.framing`), and from then
on the socket is its RS-485 line: the hub writes requests and reads answers. Rules the
line imposes, and how this module keeps them:

* **Half duplex.** Exactly one request is outstanding per DTU. The next is written only once
  the answer arrived (and its records were committed to the journal) or the response timeout
  ran out (after ``retries`` resends).
* **Commands before polls.** Downlink commands wait in their own queue, which is always served
  first; polls wait behind them.
* **A dead slave costs only its own timeouts.** Each slave has its own poll schedule; one that
  does not answer is retried, counted and skipped until its next cycle, and gets no liveness
  credit from the DTU's heartbeats, so presence marks it offline while its neighbours go on.
  While it keeps failing it is tried once per cycle, without retries, until it answers.
* **Untrusted bytes.** An unknown registration id closes the connection (counted, logged with a
  hex excerpt). Heartbeats and a repeated id prefix are recognised by the framer wherever they
  arrive between frames, even split across reads, and dropped (a repeated id prefix is also
  dropped at the start of each read, where the DTU puts it); garbage and CRC failures are
  skipped by the framer and counted; the receive buffer is bounded. Nothing a device sends can
  raise out of ``dataReceived``.
* **Sessions.** A DTU that reconnects replaces its old session (the old socket is aborted and
  nothing more is written to it);
  a session with no traffic for ``idle_timeout`` is closed; at most ``max_connections`` sockets
  per listener.

Devices name their DTU and slave: ``address: {dtu: "861234567890123", slave: 1}`` (a Modbus
slave number; a DL/T 645 meter's 12-digit address in quotes: ``slave: "000000000161"``),
optionally ``poll_interval`` (seconds; default the model's).

Modules: :mod:`.framing` (what a DTU puts around the serial bytes: registration ids,
heartbeats), :mod:`.options` (configuration), :mod:`.session` (the sans-IO state machine of
one connection: bytes and times in, writes, timers, records and command results out;
:mod:`.session_io`, what it asks of its caller) and
:mod:`.protocol` (the thin Twisted service, factory and protocol around it).

Metrics (label ``transport``): ``dtu.connections_accepted`` (every TCP connection accepted,
even one closed at once), ``dtu.connections_refused`` (over ``max_connections``),
``dtu.refused`` (bad or unknown registration), ``dtu.timeouts``, ``dtu.response_timeouts``,
``dtu.frame_errors``, ``dtu.decode_errors``, ``dtu.unsolicited_frames``,
``dtu.replaced_sessions``, ``dtu.internal_errors``, ``dtu.broadcasts`` (periodic broadcasts
written, e.g. DL/T 645 time syncs) and the ``dtu.round_trip_ms`` histogram.
"""

from __future__ import annotations

from hub import hookimpl
from hub.contracts import TransportType
from plugins.transports.tcp_dtu.options import DtuOptions, check_address, check_options
from plugins.transports.tcp_dtu.protocol import (
    ROUND_TRIP_BUCKETS_MS,
    DtuFactory,
    DtuProtocol,
    DtuService,
)
from plugins.transports.tcp_dtu.session import FRAME_ERROR_LOG_INTERVAL, DtuSession

__all__ = [
    "FRAME_ERROR_LOG_INTERVAL",
    "ROUND_TRIP_BUCKETS_MS",
    "DtuFactory",
    "DtuOptions",
    "DtuProtocol",
    "DtuService",
    "DtuSession",
    "check_address",
    "check_options",
]


@hookimpl
def hub_register_transport_types() -> list[TransportType]:
    return [TransportType("tcp_dtu", DtuService, check_options,
                          "4G/GPRS transparent DTUs over TCP, polling Modbus RTU slaves "
                          "and DL/T 645 meters",
                          check_address=check_address)]
