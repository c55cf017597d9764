"""Register contents ↔ numbers: data types, byte and word order, units.

Modbus only defines 16-bit big-endian registers; wider values span two registers in an
order the protocol leaves to the vendor. Orders are named by where the bytes of the
big-endian value ``A B C D`` travel:

=========  ==========  ==========  ======================
order      byte_order  word_order  registers on the wire
=========  ==========  ==========  ======================
ABCD       big         big         ``AB`` ``CD``
CDAB       big         little      ``CD`` ``AB``
BADC       little      big         ``BA`` ``DC``
DCBA       little      little      ``DC`` ``BA``
=========  ==========  ==========  ======================

For 16-bit types only the byte order matters (``BA`` when little).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

from hub.contracts import EncodeError
from hub.model import QUANTITIES
from hub.validate import Invalid

__all__ = ["CONVERSIONS", "ORDERS", "TYPES", "conversion", "decode", "encode", "from_raw",
           "tidy", "to_raw"]

#: Registers each type occupies (``bit`` is one bit of a register, or one coil/input).
TYPES: dict[str, int] = {"u16": 1, "s16": 1, "u32": 2, "s32": 2, "f32": 2, "bit": 1}

#: Order names → (byte_order, word_order).
ORDERS: dict[str, tuple[str, str]] = {
    "ABCD": ("big", "big"),
    "CDAB": ("big", "little"),
    "BADC": ("little", "big"),
    "DCBA": ("little", "little"),
}

_STRUCT = {"u16": ">H", "s16": ">h", "u32": ">I", "s32": ">i", "f32": ">f"}


def _swap(data: bytes, byte_order: str) -> bytes:
    if byte_order == "little":
        return bytes(data[i ^ 1] for i in range(len(data)))  # swap the bytes of each word
    return data


def decode(registers: Sequence[int], type_: str, byte_order: str = "big",
           word_order: str = "big") -> tuple[int | float, int]:
    """The value of ``type_`` held in ``registers`` (as read, in address order), and the
    same bytes as an unsigned integer (what sentinels such as 0xFFFF are compared with).

    f32 values are rounded to the 7 significant digits a float32 carries, so 220.5 stays
    220.5 and 49.99 does not become 49.9900016784668.
    """
    regs = list(registers)
    if word_order == "little":
        regs.reverse()
    data = _swap(b"".join(r.to_bytes(2, "big") for r in regs), byte_order)
    value = struct.unpack(_STRUCT[type_], data)[0]
    if type_ == "f32" and math.isfinite(value):
        value = float(f"{value:.7g}")
    return value, int.from_bytes(data, "big")


def encode(value: int | float, type_: str, byte_order: str = "big",
           word_order: str = "big") -> tuple[int, ...]:
    """The registers (in address order) that hold ``value`` as ``type_``; raises
    :class:`EncodeError` when the value does not fit the type."""
    try:
        data = struct.pack(_STRUCT[type_], value)
    except (struct.error, OverflowError):
        raise EncodeError(f"{value} does not fit in {type_}") from None
    if type_ == "f32" and not math.isfinite(struct.unpack(">f", data)[0]):
        raise EncodeError(f"{value} does not fit in f32")
    data = _swap(data, byte_order)
    regs = [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
    if word_order == "little":
        regs.reverse()
    return tuple(regs)


def tidy(x: float) -> float:
    """``x`` to 12 significant digits: scaling by 0.1 gives 22.400000000000002, which no
    device meant; 12 digits are far beyond what any register carries."""
    return float(f"{x:.12g}")


def from_raw(raw: int | float, scale: float = 1.0, offset: float = 0.0, factor: float = 1.0,
             unit_offset: float = 0.0) -> float:
    """The canonical value of a raw register number: ``((raw * scale) + offset) * factor +
    unit_offset``, where ``factor`` and ``unit_offset`` convert the device's unit (see
    :func:`conversion`)."""
    return tidy((raw * scale + offset) * factor + unit_offset)


def to_raw(value: float, type_: str, scale: float = 1.0, offset: float = 0.0,
           factor: float = 1.0, unit_offset: float = 0.0) -> int | float:
    """The raw number a register of ``type_`` holds for the canonical ``value``: the inverse
    of :func:`from_raw`, rounded to the register's resolution (to an integer, except for
    f32). Feed the result to :func:`encode` for the registers; what a device, a simulator
    or a set-point write needs."""
    raw = ((value - unit_offset) / factor - offset) / scale
    return tidy(raw) if type_ == "f32" else round(raw)


# ---- units ------------------------------------------------------------------------------

#: Per canonical unit (:data:`hub.model.QUANTITIES`), the device units it converts from:
#: ``canonical = device_value * factor + offset``.
CONVERSIONS: dict[str, dict[str, tuple[float, float]]] = {
    "mA": {"mA": (1, 0), "A": (1000, 0), "uA": (0.001, 0), "µA": (0.001, 0)},
    "A": {"A": (1, 0), "mA": (0.001, 0), "kA": (1000, 0)},
    "V": {"V": (1, 0), "mV": (0.001, 0), "kV": (1000, 0)},
    "°C": {"°C": (1, 0), "℃": (1, 0), "degC": (1, 0), "K": (1, -273.15),
           "°F": (5 / 9, -160 / 9)},
    "W": {"W": (1, 0), "kW": (1000, 0), "MW": (1e6, 0)},
    "var": {"var": (1, 0), "kvar": (1000, 0), "Mvar": (1e6, 0)},
    "VA": {"VA": (1, 0), "kVA": (1000, 0), "MVA": (1e6, 0)},
    "kWh": {"kWh": (1, 0), "Wh": (0.001, 0), "MWh": (1000, 0)},
    "kvarh": {"kvarh": (1, 0), "varh": (0.001, 0), "Mvarh": (1000, 0)},
    "Hz": {"Hz": (1, 0)},
    "%": {"%": (1, 0)},
    "%obs/m": {"%obs/m": (1, 0)},
    "ppm": {"ppm": (1, 0)},
    "dBm": {"dBm": (1, 0)},
    "": {"": (1, 0)},
}


def conversion(quantity: str, unit: str | None) -> tuple[float, float]:
    """``(factor, offset)`` from ``unit`` to the canonical unit of ``quantity`` (``None``:
    the device already uses the canonical unit). Raises :class:`Invalid` when there is no
    conversion."""
    canonical = QUANTITIES[quantity].unit
    if unit is None:
        return 1.0, 0.0
    known = CONVERSIONS.get(canonical, {canonical: (1, 0)})
    if unit not in known:
        names = ", ".join(repr(u) for u in known)
        shown = repr(canonical) if canonical else "'' (no unit)"
        raise Invalid(f"{unit!r} cannot be converted to {shown}, the unit of {quantity} "
                      f"(known: {names})")
    factor, offset = known[unit]
    return float(factor), float(offset)
