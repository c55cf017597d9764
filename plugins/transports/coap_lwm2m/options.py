"""The options of a ``coap_lwm2m`` transport and the check of its devices' addresses.

::

    transports:
      nb:
        type: coap_lwm2m
        host: "::"                 # all addresses, IPv4 and IPv6
        port: 5683
        uplink_path: "up/{imei}"   # plain CoAP uplink of non-LwM2M devices; null: off
        downlink_path: "down"      # where such devices take commands (CoAP POST)
        lifetime_grace: 30         # s added to a registration's lifetime before offline ...
        lifetime_grace_ratio: 0.1  # ... or this share of the lifetime, whichever is longer
        queue_window: 20           # s a queue-mode device listens after it sent something
        recent_traffic: 60         # s after its last message a device without queue mode
                                   # is still sent commands at once; later they wait
        request_timeout: 20        # s to wait for a device's answer to one request
        max_queue: 100             # commands waiting per device
        firmware_path: fw          # where devices fetch firmware images (pull, Block2)
        firmware_uri: null         # coap://host:port devices reach the hub at (default:
                                   # coap://127.0.0.1:<port> when host is a wildcard)
        firmware_block: 512        # bytes per block, pushed and served (16 ... 1024)
        firmware_port: null        # UDP port of a socket of its own for the image (pull);
                                   # null: served on `port` with everything else
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from hub.validate import Invalid, Section, boolean, describe, integer, number, string

#: The device ids an endpoint name may resolve to: IMEIs, IMSIs, serials, plain names.
ADDRESS = re.compile(r"[0-9A-Za-z._:;@+\-]{1,128}")
PLACEHOLDER = "{imei}"


def _path(template: Any) -> tuple[str, ...]:
    """``"up/{imei}"`` → ``("up", "{imei}")``: the Uri-Path segments to match."""
    text = string()(template)
    segments = tuple(s for s in text.strip("/").split("/"))
    if not text.strip("/") or any(not s for s in segments):
        raise Invalid(f"{text!r} is not a path like up/{{imei}}")
    if segments.count(PLACEHOLDER) != 1 or any(
            PLACEHOLDER != s and ("{" in s or "}" in s) for s in segments):
        raise Invalid(f"{text!r} must hold {PLACEHOLDER} exactly once, as a whole segment")
    if segments[0] == "rd":
        raise Invalid(f"{text!r} would shadow the registration interface /rd")
    return segments


def _plain_path(template: Any) -> tuple[str, ...]:
    text = string()(template)
    segments = tuple(text.strip("/").split("/"))
    if not text.strip("/") or any(not s or "{" in s for s in segments):
        raise Invalid(f"{text!r} is not a path like down")
    return segments


def _coap_uri(value: Any) -> str | None:
    if value is None:
        return None
    text = string()(value).rstrip("/")
    if not re.fullmatch(r"coaps?://[^/\s]+", text):
        raise Invalid(f"{text!r} is not a base URI like coap://hub.example.com:5683")
    return text


def _block_size(value: Any) -> int:
    n = integer(16, 1024)(value)
    if n & (n - 1):
        raise Invalid(f"{n} is not a power of two (16, 32, ... 1024)")
    return n


@dataclass(frozen=True)
class CoapOptions:
    host: str = "::"
    port: int = 5683
    uplink_path: tuple[str, ...] | None = ("up", PLACEHOLDER)
    downlink_path: tuple[str, ...] = ("down",)
    default_lifetime: float = 86400.0  # LwM2M's default when a Register carries no lt
    min_lifetime: float = 1.0
    max_lifetime: float = 30 * 86400.0
    lifetime_grace: float = 30.0
    lifetime_grace_ratio: float = 0.1
    queue_window: float = 20.0
    recent_traffic: float = 60.0
    request_timeout: float = 20.0
    attempts: int = 3  # sends of one command before it fails (no answer each time)
    max_queue: int = 100
    max_payload: int = 16384
    observe: bool = True
    #: SO_RCVBUF of the server socket, bytes (the kernel caps it at net.core.rmem_max)
    receive_buffer: int = 4 << 20
    #: how far back the journal is searched at start for commands still to deliver
    resume_horizon: float = 7 * 86400.0
    #: firmware updates (hub.ota): the image's path, the URI base devices use, block size
    firmware_path: tuple[str, ...] = ("fw",)
    firmware_uri: str | None = None
    firmware_block: int = 512
    #: a socket of its own for pull downloads: on the shared one a block request waits
    #: behind every notification queued in its receive buffer (0: any free port)
    firmware_port: int | None = None

    def grace(self, lifetime: float) -> float:
        """Seconds of slack after a registration's lifetime before the device is offline:
        an NB-IoT device's update may sit in a radio retry or a PSM wake-up for a while."""
        return max(self.lifetime_grace, self.lifetime_grace_ratio * lifetime)


def check_options(section: Section) -> CoapOptions:
    """Check ``transports.<name>`` of type ``coap_lwm2m``; every error names its key path."""
    d = CoapOptions()
    uplink = section.raw("uplink_path", "up/" + PLACEHOLDER)
    opts = CoapOptions(
        host=section.get("host", string(r"[0-9A-Za-z.:\-%]{1,255}", "an address or host name"),
                         d.host),
        port=section.get("port", integer(0, 65535), d.port),
        uplink_path=None if uplink is None else section.checker.check(
            section.path / "uplink_path", _path, uplink, default=None),
        downlink_path=section.get("downlink_path", _plain_path, d.downlink_path),
        default_lifetime=section.get("default_lifetime", number(1, 365 * 86400, "s"),
                                     d.default_lifetime),
        min_lifetime=section.get("min_lifetime", number(1, 86400, "s"), d.min_lifetime),
        max_lifetime=section.get("max_lifetime", number(1, 365 * 86400, "s"), d.max_lifetime),
        lifetime_grace=section.get("lifetime_grace", number(0, 86400, "s"), d.lifetime_grace),
        lifetime_grace_ratio=section.get("lifetime_grace_ratio", number(0, 10),
                                         d.lifetime_grace_ratio),
        queue_window=section.get("queue_window", number(0.1, 3600, "s"), d.queue_window),
        recent_traffic=section.get("recent_traffic", number(0.1, 30 * 86400, "s"),
                                   d.recent_traffic),
        request_timeout=section.get("request_timeout", number(0.1, 600, "s"), d.request_timeout),
        attempts=section.get("attempts", integer(1, 100), d.attempts),
        max_queue=section.get("max_queue", integer(1, 100000), d.max_queue),
        max_payload=section.get("max_payload", integer(16, 1 << 20), d.max_payload),
        observe=section.get("observe", boolean, d.observe),
        receive_buffer=section.get("receive_buffer", integer(0, 1 << 30), d.receive_buffer),
        resume_horizon=section.get("resume_horizon", number(0, 365 * 86400, "s"),
                                   d.resume_horizon),
        firmware_path=section.get("firmware_path", _plain_path, d.firmware_path),
        firmware_uri=section.get("firmware_uri", _coap_uri, d.firmware_uri),
        firmware_block=section.get("firmware_block", _block_size, d.firmware_block),
        firmware_port=section.get("firmware_port", _optional_port, d.firmware_port),
    )
    section.finish()
    if opts.min_lifetime > opts.max_lifetime:
        section.checker.error(section.path / "min_lifetime",
                              f"{opts.min_lifetime:g} is above max_lifetime {opts.max_lifetime:g}")
    return opts


def _optional_port(value: Any) -> int | None:
    return None if value is None else integer(0, 65535)(value)


def check_address(address: Any) -> str:
    """A device's address on this transport: its IMEI, or any id its endpoint name resolves
    to (IMSI, serial, the bare endpoint name)."""
    if isinstance(address, int) and not isinstance(address, bool):
        address = str(address)
    if not isinstance(address, str) or not address:
        raise Invalid(f"expected the device's IMEI or endpoint id, got {describe(address)}")
    if not ADDRESS.fullmatch(address):
        raise Invalid(f"{address!r} is not an IMEI or endpoint id (1-128 letters, digits and "
                      "._:;@+-)")
    return address
