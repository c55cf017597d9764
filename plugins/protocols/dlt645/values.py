"""DL/T 645-2007 values: packed BCD with a fixed decimal point, low byte first.

The standard gives every data identifier a format such as ``XXXXXX.XX`` (energy, 4 bytes,
kWh), ``XXX.X`` (voltage, 2 bytes, V), ``XXX.XXX`` (current, 3 bytes, A), ``XX.XXXX``
(power, 3 bytes, kW/kvar/kVA) or ``X.XXX`` (power factor, 2 bytes): two digits per byte,
the lowest two digits in the first byte on the wire. Values that can be negative (currents,
powers, power factor, combined energies) carry the sign in the top bit of the most
significant (last) byte (最高位表示方向, 0 positive, 1 negative), so a signed ``XX.XXXX``
holds -79.9999..79.9999.

References: DL/T 645-2007 appendix A (数据编码表): e.g. 02010100 A相电压 XXX.X 2 bytes V,
02020100 A相电流 XXX.XXX 3 bytes A, 02030000 瞬时总有功功率 XX.XXXX 3 bytes kW, 02060000
总功率因数 X.XXX 2 bytes, 02800002 电网频率 XX.XX 2 bytes Hz, 00000000 组合有功总电能
XXXXXX.XX 4 bytes kWh; the same formats are listed by the ``dlt645`` package on PyPI
(``config/variable_types.py``), an implementation written elsewhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from hub.contracts import DecodeError, EncodeError

__all__ = ["Format", "decode_value", "encode_value", "parse_format"]

_FORMAT = re.compile(r"(X+)(?:\.(X+))?")


@dataclass(frozen=True, slots=True)
class Format:
    """A BCD format: ``digits`` in all, ``decimals`` of them after the point."""

    text: str
    digits: int
    decimals: int

    @property
    def size(self) -> int:
        """Bytes on the wire."""
        return self.digits // 2


@lru_cache(maxsize=64)
def parse_format(text: str) -> Format:
    """``"XXX.X"`` → ``Format("XXX.X", 4, 1)``; :class:`ValueError` for a format that is
    not X's with at most one point, or has an odd number of digits."""
    m = _FORMAT.fullmatch(text.strip().upper()) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"{text!r} is not a BCD format such as XXXXXX.XX or XXX.X")
    digits = len(m.group(1)) + len(m.group(2) or "")
    if digits % 2 or digits > 16:
        raise ValueError(f"{text!r} has {digits} digits: a format has an even number of "
                         "digits (two per byte), at most 16")
    return Format(text.strip().upper(), digits, len(m.group(2) or ""))


def decode_value(data: bytes, fmt: Format, signed: bool = False, offset: int = 0) -> float:
    """The number in ``data`` (exactly ``fmt.size`` bytes). :class:`DecodeError` if a
    nibble is not a decimal digit (some meters answer FFH for "no value"); ``offset`` is
    where ``data`` starts in the frame, for the error."""
    if len(data) != fmt.size:
        raise DecodeError(f"{len(data)} bytes for format {fmt.text} ({fmt.size} bytes)",
                          bytes(data), offset)
    negative = False
    if signed:
        negative = bool(data[-1] & 0x80)
        data = data[:-1] + bytes([data[-1] & 0x7F])
    n = 0
    for i in range(len(data) - 1, -1, -1):
        b = data[i]
        if b >> 4 > 9 or b & 0xF > 9:
            raise DecodeError(f"byte {b:02X}H is not BCD (format {fmt.text})", bytes(data),
                              offset + i)
        n = n * 100 + (b >> 4) * 10 + (b & 0xF)
    value = n / 10 ** fmt.decimals if fmt.decimals else float(n)
    return -value if negative and n else value  # no -0.0 from a signed zero


def encode_value(value: float, fmt: Format, signed: bool = False) -> bytes:
    """The bytes of ``value`` in ``fmt``, rounded to its decimals; :class:`EncodeError`
    when it does not fit (a negative value needs ``signed`` and leaves one bit less)."""
    n = round(abs(value) * 10 ** fmt.decimals)
    if value < 0 and not signed:
        raise EncodeError(f"{value} is negative and format {fmt.text} is unsigned")
    if n >= 10 ** fmt.digits or (signed and n >= 8 * 10 ** (fmt.digits - 1)):
        raise EncodeError(f"{value} does not fit format {fmt.text}"
                          + (" (signed)" if signed else ""))
    out = bytearray()
    for _ in range(fmt.size):
        n, pair = divmod(n, 100)
        out.append((pair // 10) << 4 | pair % 10)
    if signed and value < 0 and any(out):
        out[-1] |= 0x80
    return bytes(out)
