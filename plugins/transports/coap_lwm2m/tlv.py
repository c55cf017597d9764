"""OMA LwM2M TLV (content formats 11542 and the older 1542), LwM2M 1.0 TS §6.4.3.

Each entry is a type byte, an 8- or 16-bit id, a length and the value::

    bits 7-6  identifier type: 00 object instance, 01 resource instance,
              10 multiple resource, 11 resource with value
    bit  5    0 = 8-bit id, 1 = 16-bit id
    bits 4-3  00 = length in bits 2-0, 01/10/11 = an 8/16/24-bit length follows

Object instances hold resources; multiple resources hold resource instances. TLV does not
say what type a value has: the resource's type (``types(path)``) decides, and values of
unknown resources stay ``bytes``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

from hub.contracts import EncodeError
from hub.contracts.lwm2m import Lwm2mValue, Path, Value

from .content import ContentError, float_fits_single, objlnk_from_text, path_to_text
from .resources import resource_type

Types = Callable[[Path], "str | None"]

OBJECT_INSTANCE = 0
RESOURCE_INSTANCE = 1
MULTIPLE_RESOURCE = 2
RESOURCE = 3

_KIND_NAMES = {OBJECT_INSTANCE: "object instance", RESOURCE_INSTANCE: "resource instance",
               MULTIPLE_RESOURCE: "multiple resource", RESOURCE: "resource"}
# The path length of the parent each kind of entry sits under: an object instance under
# an object (o,), a resource under an instance (o,i), a resource instance under (o,i,r).
_PARENT_DEPTH = {OBJECT_INSTANCE: 1, RESOURCE: 2, MULTIPLE_RESOURCE: 2, RESOURCE_INSTANCE: 3}
_CHILDREN = {OBJECT_INSTANCE: (RESOURCE, MULTIPLE_RESOURCE),
             MULTIPLE_RESOURCE: (RESOURCE_INSTANCE,)}
_ANY = (OBJECT_INSTANCE, RESOURCE_INSTANCE, MULTIPLE_RESOURCE, RESOURCE)
_INT_SIZES = {1: ">b", 2: ">h", 4: ">i", 8: ">q"}
_UINT_SIZES = {1: ">B", 2: ">H", 4: ">I", 8: ">Q"}


class Entry(NamedTuple):
    kind: int
    id: int
    start: int  # offset of the value in the payload
    end: int
    header: int  # offset of the type byte


# ---------------------------------------------------------------------------------------------
# Decoding


def decode(payload: bytes, base: Path, types: Types = resource_type) -> list[Lwm2mValue]:
    """Decode a TLV payload answering a request on ``base``.

    The entries at the top sit under ``base``: a read on ``/3`` gives object instances, on
    ``/3/0`` resources, on ``/3/0/7`` resource instances. A device may also answer with the
    requested node itself (a read on ``/3/0/0`` gives a resource entry with id 0, a write
    on ``/3/0`` may wrap its resources in an object instance entry with id 0).
    """
    payload = bytes(payload)
    if not 1 <= len(base) <= 4:
        raise ContentError(f"TLV needs a base path of 1 to 4 ids, got {path_to_text(base)}",
                           payload, 0)
    values: list[Lwm2mValue] = []
    _decode_level(payload, 0, len(payload), base, _ANY, types, values)
    return values


def _decode_level(payload: bytes, start: int, end: int, parent: Path, allowed: tuple[int, ...],
                  types: Types, out: list[Lwm2mValue]) -> None:
    for entry in entries(payload, start, end):
        if entry.kind not in allowed:
            raise ContentError(f"TLV: a {_KIND_NAMES[entry.kind]} entry cannot sit under "
                               f"{path_to_text(parent)}", payload, entry.header)
        path = _entry_path(payload, entry, parent)
        if entry.kind in _CHILDREN:
            _decode_level(payload, entry.start, entry.end, path, _CHILDREN[entry.kind],
                          types, out)
        else:
            out.append(Lwm2mValue(path, _typed(payload, entry, types(path), path)))


def _entry_path(payload: bytes, entry: Entry, parent: Path) -> Path:
    depth = _PARENT_DEPTH[entry.kind]
    if len(parent) == depth:
        return (*parent, entry.id)
    if len(parent) == depth + 1 and parent[-1] == entry.id:
        return parent  # the device answered with the requested node itself
    raise ContentError(f"TLV: a {_KIND_NAMES[entry.kind]} entry with id {entry.id} does not "
                       f"fit under {path_to_text(parent)}", payload, entry.header)


def entries(payload: bytes, start: int, end: int) -> Iterator[Entry]:
    """The TLV entries between ``start`` and ``end`` of ``payload``, not descending."""
    pos = start
    while pos < end:
        header = pos
        type_byte = payload[pos]
        kind = type_byte >> 6
        id_size = 2 if type_byte & 0x20 else 1
        length_size = (type_byte >> 3) & 0x03
        pos += 1
        if pos + id_size + length_size > end:
            raise ContentError("TLV: entry header runs past the end", payload, header)
        ident = int.from_bytes(payload[pos:pos + id_size], "big")
        pos += id_size
        if length_size:
            length = int.from_bytes(payload[pos:pos + length_size], "big")
            pos += length_size
        else:
            length = type_byte & 0x07
        if pos + length > end:
            raise ContentError(f"TLV: {_KIND_NAMES[kind]} {ident} declares {length} bytes, "
                               f"{end - pos} remain", payload, header)
        yield Entry(kind, ident, pos, pos + length, header)
        pos += length


def _typed(payload: bytes, entry: Entry, kind: str | None, path: Path) -> Value:
    raw = payload[entry.start:entry.end]

    def bad(expected: str) -> ContentError:
        return ContentError(f"TLV: {path_to_text(path)} is {kind}: expected {expected}, got "
                            f"{len(raw)} bytes", payload, entry.header)

    if kind in ("integer", "time"):
        if len(raw) not in _INT_SIZES:
            raise bad("1, 2, 4 or 8 bytes")
        return struct.unpack(_INT_SIZES[len(raw)], raw)[0]
    if kind == "unsigned":
        if len(raw) not in _UINT_SIZES:
            raise bad("1, 2, 4 or 8 bytes")
        return struct.unpack(_UINT_SIZES[len(raw)], raw)[0]
    if kind == "float":
        if len(raw) not in (4, 8):
            raise bad("4 or 8 bytes")
        return struct.unpack(">f" if len(raw) == 4 else ">d", raw)[0]
    if kind == "boolean":
        if len(raw) != 1 or raw[0] > 1:
            raise bad("one byte 0 or 1")
        return raw[0] == 1
    if kind == "string":
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ContentError(f"TLV: {path_to_text(path)} is not UTF-8", payload,
                               entry.start + exc.start) from None
    if kind == "objlnk":
        if len(raw) != 4:
            raise bad("4 bytes")
        obj, inst = struct.unpack(">HH", raw)
        return f"{obj}:{inst}"
    return raw


# ---------------------------------------------------------------------------------------------
# Encoding


def encode(values: Sequence[Lwm2mValue], base: Path, types: Types = resource_type) -> bytes:
    """Encode ``values`` as the TLV payload of a request on ``base`` (the inverse of
    :func:`decode`): under an object, object instance entries; under an instance, resource
    entries; on a resource, the resource entry itself; on a resource instance, that entry."""
    if not 1 <= len(base) <= 4:
        raise EncodeError(f"TLV needs a base path of 1 to 4 ids, got {path_to_text(base)}")
    top = len(base) + 1 if len(base) < 3 else len(base)
    for item in values:
        if item.path[:len(base)] != base or not top <= len(item.path) <= 4:
            raise EncodeError(f"TLV: {path_to_text(item.path)} cannot be written under "
                              f"{path_to_text(base)}")
    return b"".join(_encode_node(prefix, group, types)
                    for prefix, group in _group(values, top).items())


def _group(values: Sequence[Lwm2mValue], depth: int) -> dict[Path, list[Lwm2mValue]]:
    groups: dict[Path, list[Lwm2mValue]] = {}
    for item in values:
        groups.setdefault(item.path[:depth], []).append(item)
    return groups


def _encode_node(prefix: Path, values: list[Lwm2mValue], types: Types) -> bytes:
    depth = len(prefix)
    if depth == 2:
        content = b"".join(_encode_node(p, g, types) for p, g in _group(values, 3).items())
        return entry(OBJECT_INSTANCE, prefix[1], content)
    if depth == 3 and all(len(item.path) == 3 for item in values):
        if len(values) != 1:
            raise EncodeError(f"TLV: {path_to_text(prefix)} given {len(values)} values")
        return entry(RESOURCE, prefix[2], value_bytes(values[0], types(prefix)))
    if depth == 3 and all(len(item.path) == 4 for item in values):
        content = b"".join(_encode_node(p, g, types) for p, g in _group(values, 4).items())
        return entry(MULTIPLE_RESOURCE, prefix[2], content)
    if depth == 4 and len(values) == 1:
        return entry(RESOURCE_INSTANCE, prefix[3], value_bytes(values[0], types(prefix)))
    raise EncodeError(f"TLV: {path_to_text(prefix)} given both single and instance values "
                      "or repeated values")


def entry(kind: int, ident: int, value: bytes) -> bytes:
    """One TLV entry with the shortest id and length fields that fit."""
    if not 0 <= ident <= 0xFFFF:
        raise EncodeError(f"TLV: id {ident} is out of range")
    if len(value) > 0xFFFFFF:
        raise EncodeError(f"TLV: a value of {len(value)} bytes is too long")
    type_byte = kind << 6
    ident_bytes = ident.to_bytes(1 if ident <= 0xFF else 2, "big")
    if ident > 0xFF:
        type_byte |= 0x20
    if len(value) <= 7:
        type_byte |= len(value)
        length_bytes = b""
    else:
        size = 1 if len(value) <= 0xFF else 2 if len(value) <= 0xFFFF else 3
        type_byte |= size << 3
        length_bytes = len(value).to_bytes(size, "big")
    return bytes([type_byte]) + ident_bytes + length_bytes + value


def value_bytes(item: Lwm2mValue, kind: str | None) -> bytes:
    """The TLV value bytes of one value; ``kind`` (the resource type) picks the float form
    for an int written to a float resource and the 4-byte form of an object link."""
    value = item.value
    if isinstance(value, bool):
        return b"\x01" if value else b"\x00"
    if isinstance(value, int) and kind == "float":
        try:
            value = float(value)
        except OverflowError:
            raise EncodeError(f"TLV: {value} at {path_to_text(item.path)} is no float") from None
    if isinstance(value, int):
        return _int_bytes(value, item.path, unsigned=kind == "unsigned")
    if isinstance(value, float):
        return struct.pack(">f" if float_fits_single(value) else ">d", value)
    if isinstance(value, str) and kind == "objlnk":
        try:
            obj, inst = objlnk_from_text(value).split(":")
        except ContentError as exc:
            raise EncodeError(f"TLV: {path_to_text(item.path)}: {exc}") from None
        return struct.pack(">HH", int(obj), int(inst))
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes):
        return value
    raise EncodeError(f"TLV: no value form for {value!r} at {path_to_text(item.path)}")


def _int_bytes(value: int, path: Path, *, unsigned: bool) -> bytes:
    # The shortest of 1, 2, 4, 8 bytes that holds the value (LwM2M TS §6.4.3 allows any).
    for fmt in (_UINT_SIZES if unsigned else _INT_SIZES).values():
        try:
            return struct.pack(fmt, value)
        except struct.error:
            continue
    raise EncodeError(f"TLV: {value} at {path_to_text(path)} does not fit in 8 bytes")
