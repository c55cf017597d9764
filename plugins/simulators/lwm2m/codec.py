"""Payloads of the simulated endpoint, through the hub's own LwM2M codec
(:mod:`plugins.transports.coap_lwm2m.content`).

Sharing the codec with the hub would hide a bug common to both sides; the tests therefore
check raw bytes against the public TLV vector and read the simulator with libcoap's
``coap-client``, which we did not write.
"""

from __future__ import annotations

from collections.abc import Sequence

from hub.contracts import DecodeError, EncodeError
from hub.contracts.lwm2m import ContentFormat, Lwm2mValue, Path
from plugins.transports.coap_lwm2m import content

__all__ = ["SUPPORTED", "CodecError", "decode", "encode"]

#: formats the endpoint answers and accepts writes in
SUPPORTED = frozenset({
    ContentFormat.LWM2M_TLV, ContentFormat.OLD_TLV, ContentFormat.SENML_JSON,
    ContentFormat.SENML_CBOR, ContentFormat.LWM2M_JSON, ContentFormat.LWM2M_CBOR,
    ContentFormat.TEXT,
})


class CodecError(ValueError):
    """A payload we cannot decode, or values a format cannot carry."""


def encode(fmt: int, values: Sequence[Lwm2mValue], base: Path) -> bytes:
    """``values`` (all under ``base``) as a payload of format ``fmt``."""
    if fmt not in SUPPORTED:
        raise CodecError(f"content format {fmt} not supported")
    try:
        return content.encode(fmt, values, base)
    except (EncodeError, DecodeError) as e:
        raise CodecError(str(e)) from None


def decode(fmt: int, payload: bytes, base: Path) -> list[Lwm2mValue]:
    """The values of a Write payload, typed by the resources' known types."""
    if fmt not in SUPPORTED:
        raise CodecError(f"content format {fmt} not supported")
    try:
        return list(content.decode(fmt, payload, base))
    except (EncodeError, DecodeError) as e:
        raise CodecError(str(e)) from None
