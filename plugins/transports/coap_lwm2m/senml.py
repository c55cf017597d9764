"""SenML (RFC 8428) in JSON (content format 110) and CBOR (112), as LwM2M 1.1 uses it.

SenML is decoded in two steps. :func:`resolve` applies RFC 8428 §4.6 to a pack: base name,
base time, base unit and base value carry over to later records, and times below 2**28 are
relative to the receive time. LwM2M then reads each resolved name as a path
(``"/3/0/" + "0"`` is ``/3/0/0``) and adds ``vlo``, its object-link value.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cbor2

from hub.contracts import EncodeError
from hub.contracts.lwm2m import Lwm2mValue, Path, Value

from .content import (
    ContentError,
    Types,
    absolute_time,
    base_and_names,
    conform,
    join_name,
    load_cbor,
    load_json,
    objlnk_from_text,
    path_from_text,
    path_to_text,
)
from .resources import resource_type

#: RFC 8428 §6 Table 6: CBOR labels of the SenML fields. LwM2M's "vlo" has no number.
CBOR_LABELS = {-1: "bver", -2: "bn", -3: "bt", -4: "bu", -5: "bv", -6: "bs",
               0: "n", 1: "u", 2: "v", 3: "vs", 4: "vb", 5: "s", 6: "t", 7: "ut", 8: "vd"}
_CBOR_KEYS = {name: label for label, name in CBOR_LABELS.items()}
_VALUE_FIELDS = ("v", "vs", "vb", "vd", "vlo")
_STRING_FIELDS = ("bn", "bu", "n", "u", "vs", "vlo")
_NUMBER_FIELDS = ("bver", "bt", "bv", "bs", "v", "s", "t", "ut")


@dataclass(frozen=True, slots=True)
class Record:
    """One resolved SenML record. ``name`` is the RFC 8428 name (base name + name);
    ``base_name`` and ``own_name`` are kept so LwM2M can join them as paths. ``time`` is
    absolute (UTC epoch seconds) or ``None`` when the record has none or it is relative and
    no receive time was given. ``value`` is ``None`` for a record with no value (LwM2M's
    Read-Composite and Observe-Composite requests name paths without values)."""

    base_name: str
    own_name: str
    time: float | None
    value: Value
    unit: str | None
    field: str | None  # which value field carried the value: "v", "vs", "vb", "vd", "vlo"

    @property
    def name(self) -> str:
        return self.base_name + self.own_name


# ---------------------------------------------------------------------------------------------
# Generic SenML


def records_from_json(payload: bytes, now: float | None = None) -> list[Record]:
    pack = load_json(payload, "SenML JSON")
    if not isinstance(pack, list):
        raise ContentError("SenML JSON must be an array of records", payload, 0)
    fields = []
    for index, record in enumerate(pack):
        if not isinstance(record, dict):
            raise ContentError(f"SenML JSON record {index} is not an object", payload, 0)
        if "vd" in record:
            record = {**record, "vd": _base64url(record["vd"], index, payload)}
        fields.append(record)
    return resolve(fields, payload, now)


def records_from_cbor(payload: bytes, now: float | None = None) -> list[Record]:
    pack = load_cbor(payload)
    if not isinstance(pack, list):
        raise ContentError("SenML CBOR must be an array of records", payload, 0)
    fields = []
    for index, record in enumerate(pack):
        if not isinstance(record, dict):
            raise ContentError(f"SenML CBOR record {index} is not a map", payload, 0)
        named: dict[str, Any] = {}
        for key, value in record.items():
            # Labels are integers; "vlo" and RFC 8428 extensions are text keys.
            labelled = isinstance(key, int) and not isinstance(key, bool)
            name = CBOR_LABELS.get(key) if labelled else key
            if not isinstance(name, str):
                raise ContentError(f"SenML CBOR record {index} has an unknown label {key!r}",
                                   payload, 0)
            named[name] = value
        fields.append(named)
    return resolve(fields, payload, now)


def resolve(pack: Sequence[dict[str, Any]], payload: bytes = b"",
            now: float | None = None) -> list[Record]:
    """RFC 8428 §4.6 resolution of records already parsed into field-name dicts."""
    base_name, base_unit = "", None
    base_time: float | None = None
    base_value: float = 0
    resolved = []
    for index, record in enumerate(pack):
        _check_fields(record, index, payload)
        base_name = record.get("bn", base_name)
        base_time = record.get("bt", base_time)
        base_unit = record.get("bu", base_unit)
        base_value = record.get("bv", base_value)
        present = [f for f in _VALUE_FIELDS if f in record]
        if len(present) > 1:
            raise ContentError(f"SenML record {index} has several values: {present}", payload, 0)
        field = present[0] if present else None
        value: Value = record[field] if field else None
        if field == "v" and base_value:
            try:
                value = base_value + value
            except OverflowError:
                raise ContentError(f"SenML record {index}: bv + v overflows", payload, 0) from None
        time = None
        if "t" in record or base_time is not None:
            time = absolute_time(base_time or 0, record.get("t", 0), now)
        resolved.append(Record(base_name, record.get("n", ""), time, value,
                               record.get("u", base_unit), field))
    return resolved


def _check_fields(record: dict[str, Any], index: int, payload: bytes) -> None:
    for key, value in record.items():
        if key.endswith("_"):
            # RFC 8428 §4.4: a field ending in "_" must be understood, or the pack rejected.
            raise ContentError(f"SenML record {index} has must-understand field {key!r}",
                               payload, 0)
        if key in _STRING_FIELDS and not isinstance(value, str):
            raise ContentError(f"SenML record {index}: {key} must be a string", payload, 0)
        if key in _NUMBER_FIELDS and (isinstance(value, bool)
                                      or not isinstance(value, int | float)):
            raise ContentError(f"SenML record {index}: {key} must be a number", payload, 0)
        if key == "vb" and not isinstance(value, bool):
            raise ContentError(f"SenML record {index}: vb must be a boolean", payload, 0)
        if key == "vd" and not isinstance(value, bytes):
            raise ContentError(f"SenML record {index}: vd must be a byte string", payload, 0)


def _base64url(text: Any, index: int, payload: bytes) -> bytes:
    # RFC 8428 §5 asks for base64url without padding; padded and standard-alphabet
    # forms are accepted too, as some encoders write them.
    if not isinstance(text, str) or not text.isascii():
        raise ContentError(f"SenML record {index}: vd must be a base64url string", payload, 0)
    normal = text.replace("-", "+").replace("_", "/").rstrip("=")
    try:
        return base64.b64decode(normal + "=" * (-len(normal) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ContentError(f"SenML record {index}: vd is not base64url", payload, 0) from None


# ---------------------------------------------------------------------------------------------
# LwM2M over SenML


def decode_json(payload: bytes, base: Path, types: Types = resource_type, *,
                now: float | None = None) -> list[Lwm2mValue]:
    return to_values(records_from_json(payload, now), base, types, payload)


def decode_cbor(payload: bytes, base: Path, types: Types = resource_type, *,
                now: float | None = None) -> list[Lwm2mValue]:
    return to_values(records_from_cbor(payload, now), base, types, payload)


def to_values(records: Sequence[Record], base: Path, types: Types,
              payload: bytes = b"") -> list[Lwm2mValue]:
    """Read resolved records as LwM2M values; names are absolute paths (a record without
    any name stands for ``base``)."""
    values = []
    for record in records:
        name = join_name(record.base_name, record.own_name)
        path = path_from_text(name, payload, 0) if name else base
        value = record.value
        if record.field == "vlo":
            value = objlnk_from_text(str(value), payload, 0)
        elif record.field == "v":
            value = conform(value, types(path))
        values.append(Lwm2mValue(path, value, record.time))
    return values


def encode_json(values: Sequence[Lwm2mValue], base: Path,
                types: Types = resource_type) -> bytes:
    records = []
    for record in _records(values, base, types):
        if "vd" in record:
            record["vd"] = base64.urlsafe_b64encode(record["vd"]).rstrip(b"=").decode()
        records.append(record)
    try:
        return json.dumps(records, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode("utf-8")
    except ValueError as exc:
        raise EncodeError(f"SenML JSON: {exc}") from None


def encode_cbor(values: Sequence[Lwm2mValue], base: Path,
                types: Types = resource_type) -> bytes:
    records = [{_CBOR_KEYS.get(key, key): value for key, value in record.items()}
               for record in _records(values, base, types)]
    return cbor2.dumps(records)


def _records(values: Sequence[Lwm2mValue], base: Path, types: Types) -> list[dict[str, Any]]:
    base_name, names = base_and_names([item.path for item in values], base)
    records: list[dict[str, Any]] = []
    for item, name in zip(values, names, strict=True):
        record: dict[str, Any] = {}
        if base_name and not records:
            record["bn"] = base_name
        if name:
            record["n"] = name
        field, value = _value_field(item, types(item.path))
        if field:
            record[field] = value
        if item.ts is not None:
            record["t"] = item.ts
        records.append(record)
    return records


def _value_field(item: Lwm2mValue, kind: str | None) -> tuple[str | None, Any]:
    value = item.value
    if value is None:
        return None, None
    if isinstance(value, bool):
        return "vb", value
    if isinstance(value, int | float):
        value = conform(value, kind)
        if isinstance(value, float) and not math.isfinite(value):
            raise EncodeError(f"SenML: {value} at {path_to_text(item.path)} is not a number")
        return "v", value
    if isinstance(value, str) and kind == "objlnk":
        try:
            return "vlo", objlnk_from_text(value)
        except ContentError as exc:
            raise EncodeError(f"SenML: {path_to_text(item.path)}: {exc}") from None
    if isinstance(value, str):
        return "vs", value
    if isinstance(value, bytes):
        return "vd", value
    raise EncodeError(f"SenML: no value form for {value!r} at {path_to_text(item.path)}")
