"""LwM2M CBOR (content format 11544, LwM2M 1.2 TS §7.4.7).

Nested CBOR maps keyed by path components from the root: ``{3: {0: {0: "Open Mobile
Alliance", 7: {0: 3800, 1: 5000}}}}``. A key may also be an array of several components,
so ``{[3, 0]: {0: "…"}}`` and ``{[3, 0, 0]: "…"}`` say the same. Leaves are the values:
numbers, text, byte strings (opaque), booleans; object links are text ``"object:instance"``;
a time may come as a number or as a tag-1 epoch time.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from typing import Any

import cbor2

from hub.contracts import EncodeError
from hub.contracts.lwm2m import Lwm2mValue, Path, Value

from .content import ContentError, Types, conform, load_cbor, objlnk_from_text, path_to_text
from .resources import resource_type

_MAX_ID = 65535


def decode(payload: bytes, base: Path, types: Types = resource_type) -> list[Lwm2mValue]:
    """Decode an LwM2M CBOR payload. Its paths are absolute, so ``base`` is not needed to
    place them; it is accepted for the same signature as the other formats."""
    document = load_cbor(payload)
    if not isinstance(document, dict):
        raise ContentError("LwM2M CBOR must be a map", payload, 0)
    values: list[Lwm2mValue] = []
    _walk(document, (), types, payload, values)
    return values


def _walk(node: dict[Any, Any], prefix: Path, types: Types, payload: bytes,
          out: list[Lwm2mValue]) -> None:
    for key, child in node.items():
        path = (*prefix, *_key_components(key, prefix, payload))
        if len(path) > 4:
            raise ContentError(f"LwM2M CBOR: {path_to_text(path)} is deeper than a resource "
                               "instance", payload, 0)
        if isinstance(child, dict):
            _walk(child, path, types, payload, out)
        else:
            if len(path) < 3:
                raise ContentError(f"LwM2M CBOR: a value at {path_to_text(path)}, which is not "
                                   "a resource", payload, 0)
            out.append(Lwm2mValue(path, _leaf(child, path, types(path), payload)))


def _key_components(key: Any, prefix: Path, payload: bytes) -> Path:
    parts = key if isinstance(key, tuple | list) else (key,)
    if not parts or not all(isinstance(p, int) and not isinstance(p, bool)
                            and 0 <= p <= _MAX_ID for p in parts):
        raise ContentError(f"LwM2M CBOR: key {key!r} under {path_to_text(prefix)} is not a "
                           "path component", payload, 0)
    return tuple(parts)


def _leaf(item: Any, path: Path, kind: str | None, payload: bytes) -> Value:
    if isinstance(item, datetime.datetime):
        if item.tzinfo is None:
            item = item.replace(tzinfo=datetime.UTC)
        seconds = item.timestamp()
        return int(seconds) if seconds.is_integer() else seconds
    if isinstance(item, str) and kind == "objlnk":
        return objlnk_from_text(item, payload, 0)
    if item is None or isinstance(item, bool | int | float | str | bytes):
        return conform(item, kind)
    raise ContentError(f"LwM2M CBOR: {path_to_text(path)} holds a {type(item).__name__}, "
                       "not a resource value", payload, 0)


def encode(values: Sequence[Lwm2mValue], base: Path, types: Types = resource_type) -> bytes:
    """Encode values as nested maps from the root (``base`` only checks that each value
    lies under the request path)."""
    tree: dict[int, Any] = {}
    for item in values:
        if item.path[:len(base)] != base or not 3 <= len(item.path) <= 4:
            raise EncodeError(f"LwM2M CBOR: {path_to_text(item.path)} is not a resource under "
                              f"{path_to_text(base)}")
        node = tree
        for component in item.path[:-1]:
            child = node.setdefault(component, {})
            if not isinstance(child, dict):
                raise EncodeError(f"LwM2M CBOR: {path_to_text(item.path)} lies under a value")
            node = child
        if item.path[-1] in node:
            raise EncodeError(f"LwM2M CBOR: {path_to_text(item.path)} given twice")
        node[item.path[-1]] = _leaf_out(item, types(item.path))
    return cbor2.dumps(tree)


def _leaf_out(item: Lwm2mValue, kind: str | None) -> Any:
    value = conform(item.value, kind)
    if isinstance(value, float) and not math.isfinite(value):
        raise EncodeError(f"LwM2M CBOR: {value} at {path_to_text(item.path)}")
    if isinstance(value, str) and kind == "objlnk":
        try:
            return objlnk_from_text(value)
        except ContentError as exc:
            raise EncodeError(f"LwM2M CBOR: {path_to_text(item.path)}: {exc}") from None
    return value
