"""The LwM2M 1.0 JSON format (content formats 11543 and the older 1543), LwM2M 1.0 TS §6.4.4.

``{"bn":"/3/0/","bt":…,"e":[{"n":"0","sv":"Open Mobile Alliance"},{"n":"9","v":100}]}``:
``bn`` (optional) prefixes every name and defaults to the request path; each entry has a
name, one of ``v`` (number), ``sv`` (string; base64 for opaque resources), ``bv``
(boolean) or ``ov`` (object link ``"object:instance"``), and an optional time ``t`` that
adds to ``bt``. LwM2M 1.1 replaced it with SenML JSON; 1.0 devices still send it.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Sequence
from typing import Any

from hub.contracts import EncodeError
from hub.contracts.lwm2m import Lwm2mValue, Path, Value

from .content import (
    ContentError,
    Types,
    absolute_time,
    base_and_names,
    conform,
    join_name,
    load_json,
    objlnk_from_text,
    path_from_text,
    path_to_text,
)
from .resources import resource_type

_VALUE_FIELDS = ("v", "sv", "bv", "ov")


def decode(payload: bytes, base: Path, types: Types = resource_type, *,
           now: float | None = None) -> list[Lwm2mValue]:
    document = load_json(payload, "LwM2M JSON")
    if not isinstance(document, dict) or not isinstance(document.get("e"), list):
        raise ContentError('LwM2M JSON must be an object with an "e" array', payload, 0)
    base_name = document.get("bn", path_to_text(base).rstrip("/") + "/")
    base_time = document.get("bt")
    if not isinstance(base_name, str):
        raise ContentError('LwM2M JSON: "bn" must be a string', payload, 0)
    if base_time is not None and not _is_number(base_time):
        raise ContentError('LwM2M JSON: "bt" must be a number', payload, 0)
    return [_entry(entry, index, base_name, base_time, types, now, payload)
            for index, entry in enumerate(document["e"])]


def _entry(entry: Any, index: int, base_name: str, base_time: float | None, types: Types,
           now: float | None, payload: bytes) -> Lwm2mValue:
    def bad(problem: str) -> ContentError:
        return ContentError(f"LwM2M JSON entry {index}: {problem}", payload, 0)

    if not isinstance(entry, dict):
        raise bad("not an object")
    name = entry.get("n", "")
    if not isinstance(name, str):
        raise bad('"n" must be a string')
    path = path_from_text(join_name(base_name, name), payload, 0)
    present = [f for f in _VALUE_FIELDS if f in entry]
    if len(present) > 1:
        raise bad(f"several values {present}")
    kind = types(path)
    value: Value = None
    if present:
        field, raw = present[0], entry[present[0]]
        if field == "v" and _is_number(raw):
            value = conform(raw, kind)
        elif field == "sv" and isinstance(raw, str):
            value = _opaque(raw, bad) if kind == "opaque" else raw
        elif field == "bv" and isinstance(raw, bool):
            value = raw
        elif field == "ov" and isinstance(raw, str):
            value = objlnk_from_text(raw, payload, 0)
        else:
            raise bad(f'"{field}" has the wrong type')
    time = entry.get("t")
    if time is not None and not _is_number(time):
        raise bad('"t" must be a number')
    ts = None
    if time is not None or base_time is not None:
        ts = absolute_time(base_time or 0, time or 0, now)
    return Lwm2mValue(path, value, ts)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _opaque(text: str, bad: Any) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise bad("an opaque value must be base64") from None


def encode(values: Sequence[Lwm2mValue], base: Path, types: Types = resource_type) -> bytes:
    base_name, names = base_and_names([item.path for item in values], base)
    entries = []
    for item, name in zip(values, names, strict=True):
        entry: dict[str, Any] = {"n": name} if name else {}
        field, value = _value_field(item, types(item.path))
        if field:
            entry[field] = value
        if item.ts is not None:
            entry["t"] = item.ts
        entries.append(entry)
    document: dict[str, Any] = {"bn": base_name} if base_name else {}
    document["e"] = entries
    try:
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode("utf-8")
    except ValueError as exc:
        raise EncodeError(f"LwM2M JSON: {exc}") from None


def _value_field(item: Lwm2mValue, kind: str | None) -> tuple[str | None, Any]:
    value = item.value
    if value is None:
        return None, None
    if isinstance(value, bool):
        return "bv", value
    if isinstance(value, int | float):
        value = conform(value, kind)
        if isinstance(value, float) and not math.isfinite(value):
            raise EncodeError(f"LwM2M JSON: {value} at {path_to_text(item.path)}")
        return "v", value
    if isinstance(value, str) and kind == "objlnk":
        try:
            return "ov", objlnk_from_text(value)
        except ContentError as exc:
            raise EncodeError(f"LwM2M JSON: {path_to_text(item.path)}: {exc}") from None
    if isinstance(value, str):
        return "sv", value
    if isinstance(value, bytes):
        return "sv", base64.b64encode(value).decode()
    raise EncodeError(f"LwM2M JSON: no value form for {value!r} at {path_to_text(item.path)}")
