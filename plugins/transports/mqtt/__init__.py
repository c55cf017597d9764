"""Built-in plugin: the ``mqtt`` transport — the hub as a client of an MQTT broker
(Mosquitto on site, EMQX in the cloud) that detectors and 4G DTUs publish through.

::

    transports:
      broker:
        type: mqtt
        host: 127.0.0.1
        port: 8883
        tls: {ca_file: /etc/hub/ca.pem, cert_file: /etc/hub/hub.pem, key_file: /etc/hub/hub.key}
        username: hub                          # or a client certificate, or both
        password: {env: MQTT_PASSWORD}
        client_id: hub-1                       # stable: the broker keeps its session by it
        topics: {uplink: "esm/{device}/up", status: "esm/{device}/status",
                 command: "esm/{device}/down", result: "esm/{device}/ack"}
        shared_group: hubs                     # optional: $share/hubs/... splits the stream
    devices:
      - {id: efd-7, model: acme, transport: broker, address: "861234567890007"}

A device's ``address`` is what stands for ``{device}`` in its topics (default: its id).

How the promises are kept:

* **At-least-once.** Subscriptions are QoS 1 on a persistent session (MQTT 5 clean start
  off with a session expiry, or MQTT 3.1.1 clean session off), so what devices publish while
  the hub is away waits in the broker. paho runs with ``manual_ack=True``: a PUBLISH is
  acknowledged only after :meth:`hub.core.Hub.ingest`'s Deferred fired, i.e. after its
  records are committed to the journal. Acks leave in the order the messages arrived
  (MQTT 4.6); a hub killed before the commit is sent the message again. A batch the
  journal refuses drops that connection (see :meth:`MqttService._refused`): unacked, it
  would hold back every later ack.
* **paho never blocks the reactor.** paho's network loop runs in one thread per broker
  connection (our own loop around ``Client.loop()``, for jittered backoff). Received messages
  go into a deque and the reactor is woken once per batch (``callFromThread``), so records
  reach the reactor thread in arrival order, hence in order per device.
* **Untrusted input.** A topic whose device part is not in the registry is refused and
  counted (``registry.refused``, ``mqtt.refused``); oversized or undecodable payloads are
  counted (``mqtt.decode_errors``) and logged with the topic and an excerpt; such messages
  are acknowledged (there is nothing to keep) and the connection goes on. Packets over
  :attr:`MqttOptions.max_packet` are discarded by an MQTT 5 broker (Maximum Packet Size) or
  skipped by the native decoder (``mqtt.oversized``).
* **Link down.** Reconnects with exponential backoff and jitter; resubscribes; the gauge
  ``mqtt.connected`` and a fault event ``broker_link`` (device ``hub``) mark the outage.
* **Supervised.** Each connection's thread (paho) or loop (native) runs under
  :class:`hub.supervisor.Supervisor`: a bug that kills it is logged with its traceback,
  counted (``mqtt.crashes``), raises ``component_crashed``, marks the link down and the
  engine starts again. A topic that is not UTF-8 is counted (``mqtt.bad_topics``), logged
  and acknowledged, never handed on.
* **Commands.** The device model encodes; the payload is published to the command topic
  with the command id as MQTT 5 correlation data and the result topic as response topic
  (models with a JSON format also carry the id in the payload). A message on the result
  topic completes the command; none within ``command_timeout`` → timed out.

The broker must not drop what the hub has not acknowledged: see the README section "MQTT"
(``max_queued_messages``).

The modules, one job each, imported in this order (no cycle): :mod:`.options` (options and
topic templates), :mod:`.engine` (what an engine offers the service, the received message),
:mod:`.codec` (sans-IO MQTT), :mod:`.paho_engine` and :mod:`.native_engine` (one broker
connection each way), :mod:`.service` (the Twisted service).
"""

from hub import hookimpl
from hub.contracts import TransportType
from plugins.transports.mqtt.options import (
    Invalid,
    MqttOptions,
    TlsOptions,
    TopicTemplate,
    check_address,
    check_options,
)
from plugins.transports.mqtt.service import MqttService

__all__ = ["Invalid", "MqttOptions", "MqttService", "TlsOptions", "TopicTemplate",
           "check_address", "check_options", "hub_register_transport_types"]


@hookimpl
def hub_register_transport_types() -> list[TransportType]:
    return [TransportType("mqtt", MqttService, check_options,
                          "an MQTT broker (paho-mqtt): uplink, status, commands; QoS 1 acked "
                          "after the journal commit", check_address=check_address)]
