"""Built-in plugin: the ``coap_lwm2m`` transport — an LwM2M server (registration interface,
observations, queue mode) and a plain CoAP uplink for NB-IoT detectors.

::

    transports:
      nb:
        type: coap_lwm2m
        port: 5683
    models:
      nb-efd: {type: lwm2m_ipso}
    devices:
      - {id: efd-1, model: nb-efd, transport: nb, address: "861234567890123"}

A device's ``address`` is its IMEI, or any id its endpoint name resolves to
(``861234567890123``, ``urn:imei:861234567890123`` and ``urn:imei-imsi:<IMEI>-<IMSI>`` all
find the device above). Options: :mod:`.options`; how it works: :mod:`.service`.
"""

from __future__ import annotations

from hub import hookimpl
from hub.contracts import TransportType

from .options import check_address, check_options


def _factory(hub, name, options):
    # aiocoap is imported only when a hub actually runs this transport
    from .service import Lwm2mService

    return Lwm2mService(hub, name, options)


@hookimpl
def hub_register_transport_types() -> list[TransportType]:
    return [TransportType("coap_lwm2m", _factory, check_options,
                          "LwM2M server and plain CoAP uplink over UDP (aiocoap): NB-IoT "
                          "detectors, observations, commands queued for sleeping devices",
                          check_address=check_address)]
