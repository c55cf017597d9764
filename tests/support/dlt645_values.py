"""BCD values of DL/T 645 written as the standard's tables show them (for test vectors)."""

from __future__ import annotations

from plugins.protocols.dlt645 import (
    encode_value,
    parse_format,
)


def bcd(value: float, fmt: str, signed: bool = False) -> bytes:
    return encode_value(value, parse_format(fmt), signed)
