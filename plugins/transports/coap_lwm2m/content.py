"""Decode and encode LwM2M payloads by CoAP Content-Format number.

This module is the one entry point the transport calls; each format lives in its own module
(``tlv``, ``senml``, ``lwm2m_json``, ``lwm2m_cbor``). It also holds what those modules share:
:class:`ContentError`, the conversion of text paths, and the typing of self-describing values.
Everything here is pure: bytes in, values out. Bad bytes raise :class:`ContentError` and
nothing else.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import re
import struct
from collections.abc import Callable, Sequence
from typing import Any

from hub.contracts import DecodeError, EncodeError
from hub.contracts.lwm2m import ContentFormat, Lwm2mValue, Path, Value

from .resources import resource_type

#: ``types(path)`` gives a resource's type name (see ``resources.py``) or ``None``.
Types = Callable[[Path], "str | None"]

#: SenML and LwM2M JSON times below 2**28 are relative to "now" (RFC 8428 §4.5.3).
RELATIVE_TIME_LIMIT = 2**28

_EXCERPT = 16
_MAX_ID = 65535


class ContentError(DecodeError):
    """A payload is not valid in its content format.

    ``offset`` is where in the payload the problem is (``None`` when the payload as a whole
    is wrong, e.g. invalid JSON whose parser gave no position); ``excerpt`` is up to 16 bytes
    from there, for the log.
    """

    def __init__(self, message: str, payload: bytes | str = b"", offset: int | None = None) -> None:
        data = payload.encode("utf-8", "replace") if isinstance(payload, str) else bytes(payload)
        start = offset if offset is not None and 0 <= offset <= len(data) else 0
        super().__init__(message, data[start:start + _EXCERPT], offset)


# ---------------------------------------------------------------------------------------------
# Helpers the format modules share


def path_from_text(text: str, payload: bytes | str = b"", offset: int | None = None) -> Path:
    """``"/3/0/1"`` -> ``(3, 0, 1)``. The leading slash is optional, and so is one trailing
    slash (``"/3/0/"`` is the instance); ``"/"`` is the root."""
    stripped = text[1:] if text.startswith("/") else text
    stripped = stripped[:-1] if stripped.endswith("/") else stripped
    if stripped == "":
        return ()
    parts = stripped.split("/")
    if len(parts) > 4 or not all(p.isascii() and p.isdigit() for p in parts):
        raise ContentError(f"{text!r} is not an LwM2M path", payload, offset)
    path = tuple(int(p) for p in parts)
    if any(p > _MAX_ID for p in path):
        raise ContentError(f"{text!r} has an id above {_MAX_ID}", payload, offset)
    return path


def path_to_text(path: Path) -> str:
    return "/" + "/".join(str(p) for p in path)


_OBJLNK = re.compile(r"([0-9]{1,5}):([0-9]{1,5})")


def objlnk_from_text(text: str, payload: bytes | str = b"", offset: int | None = None) -> str:
    """Check an object link written ``"object:instance"`` (the SenML ``vlo`` form, which is
    also how :class:`Lwm2mValue` carries object links) and return it normalised."""
    match = _OBJLNK.fullmatch(text)
    if not match or int(match[1]) > _MAX_ID or int(match[2]) > _MAX_ID:
        raise ContentError(f"{text!r} is not an object link 'object:instance'", payload, offset)
    return f"{int(match[1])}:{int(match[2])}"


def conform(value: Value, kind: str | None) -> Value:
    """Give a self-described value (SenML, JSON, CBOR) the Python type its resource has.

    Those formats say "number", not integer or float, and JSON writes 25.0 as 25; so a float
    resource gets a float and an integer resource an int when that loses nothing. A value
    that does not fit its resource type is left as it came rather than guessed at.
    """
    if isinstance(value, bool) or value is None:
        return value
    if kind == "float" and isinstance(value, int):
        try:
            return float(value)
        except OverflowError:  # a bignum no float can hold stays as it came
            return value
    if kind in ("integer", "unsigned", "time") and isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
    return value


def absolute_time(base_time: float, time: float, now: float | None) -> float | None:
    """RFC 8428 §4.5.3: a resolved time below 2**28 is relative to the time the message was
    received; without ``now`` such a time cannot be placed, so it is ``None``."""
    try:
        resolved = float(base_time) + float(time)
    except OverflowError:  # CBOR bignums
        return None
    if not math.isfinite(resolved):
        return None
    if resolved >= RELATIVE_TIME_LIMIT:
        return resolved
    return None if now is None else now + resolved


def load_cbor(payload: bytes) -> Any:
    """Decode exactly one CBOR data item.

    cbor2 turns some tags into Python objects (dates, fractions, regular expressions, MIME
    messages) whose constructors raise their own exceptions on crafted input, so any failure
    of the decoder becomes a ContentError here.
    """
    import cbor2

    stream = io.BytesIO(payload)
    try:
        item = cbor2.CBORDecoder(stream).decode()
    except Exception as exc:  # noqa: BLE001 - see the docstring
        raise ContentError(f"not valid CBOR: {exc}", payload, min(stream.tell(), len(payload))) \
            from None
    if stream.tell() != len(payload):
        raise ContentError("bytes after the CBOR data item", payload, stream.tell())
    return item


def load_json(payload: bytes, what: str) -> Any:
    """Parse a JSON document, turning every way it can fail into a ContentError."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContentError(f"{what} payload is not UTF-8", payload, exc.start) from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        offset = len(text[:exc.pos].encode("utf-8"))
        raise ContentError(f"{what}: invalid JSON: {exc.msg}", payload, offset) from None
    except (ValueError, RecursionError) as exc:  # NaN/Infinity, too many digits, too deep
        raise ContentError(f"{what}: invalid JSON: {exc}", payload, 0) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def join_name(base_name: str, name: str) -> str:
    """Join a base name and a name as LwM2M paths: ``"/3/0/"`` + ``"1"``, ``"/2/3"`` +
    ``"/0"``, and also ``"/3/0"`` + ``"1"``, which plain concatenation would turn into
    ``/3/01``."""
    if base_name and name and not base_name.endswith("/") and not name.startswith("/"):
        return f"{base_name}/{name}"
    return base_name + name


def base_and_names(paths: Sequence[Path], base: Path) -> tuple[str, list[str]]:
    """Choose the base name of an encoded pack and each value's name under it: the request
    path when every value sits below it (``"/3/0/"`` with ``"0"``, ``"7/1"``), the path
    itself for a lone value at ``base``, else no base name and full paths."""
    if base and paths and all(p == base for p in paths):
        return path_to_text(base), ["" for _ in paths]
    if all(len(p) > len(base) and p[:len(base)] == base for p in paths):
        prefix = path_to_text(base).rstrip("/") + "/"
        return prefix, ["/".join(str(i) for i in p[len(base):]) for p in paths]
    return "", [path_to_text(p) for p in paths]


# ---------------------------------------------------------------------------------------------
# text/plain (0), application/octet-stream (42) and application/cbor (60): one value at ``base``

_INTEGER_TEXT = re.compile(r"[-+]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")


def _decode_text(payload: bytes, base: Path, types: Types) -> list[Lwm2mValue]:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContentError("text/plain payload is not UTF-8", payload, exc.start) from None
    kind = types(base)
    value: Value
    if kind in ("integer", "unsigned", "time"):
        if not _INTEGER_TEXT.fullmatch(text):
            raise ContentError(f"{path_to_text(base)} is {kind}, got {text[:32]!r}", payload, 0)
        try:
            value = int(text)
        except ValueError:  # more digits than Python converts
            raise ContentError(f"{path_to_text(base)}: integer too long", payload, 0) from None
    elif kind == "float":
        if not _FLOAT_TEXT.fullmatch(text):
            raise ContentError(f"{path_to_text(base)} is float, got {text[:32]!r}", payload, 0)
        value = float(text)
    elif kind == "boolean":
        if text not in ("0", "1"):
            raise ContentError(f"{path_to_text(base)} is boolean ('0' or '1'), got "
                               f"{text[:32]!r}", payload, 0)
        value = text == "1"
    elif kind == "objlnk":
        value = objlnk_from_text(text, payload, 0)
    elif kind == "opaque":
        # LwM2M 1.1 TS §7.4.1: opaque resources travel base64-encoded in text/plain.
        try:
            value = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ContentError(f"{path_to_text(base)} is opaque: text/plain must be base64",
                               payload, 0) from None
    else:
        value = text
    return [Lwm2mValue(base, value)]


def _single(values: Sequence[Lwm2mValue], fmt_name: str) -> Lwm2mValue:
    if len(values) != 1:
        raise EncodeError(f"{fmt_name} carries exactly one value, got {len(values)}")
    return values[0]


def _encode_text(values: Sequence[Lwm2mValue], types: Types) -> bytes:
    item = _single(values, "text/plain")
    value, kind = item.value, types(item.path)
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise EncodeError(f"{path_to_text(item.path)}: {value} has no text/plain form")
        return repr(value).encode()
    if isinstance(value, int):
        return str(conform(value, kind)).encode()
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes):
        return base64.b64encode(value)
    raise EncodeError(f"{path_to_text(item.path)}: no text/plain form for {value!r}")


def _encode_opaque(values: Sequence[Lwm2mValue]) -> bytes:
    value = _single(values, "application/octet-stream").value
    if not isinstance(value, bytes):
        raise EncodeError(f"application/octet-stream needs bytes, got {type(value).__name__}")
    return value


def _decode_plain_cbor(payload: bytes, base: Path, types: Types) -> list[Lwm2mValue]:
    item = load_cbor(payload)
    if isinstance(item, (list, dict)) or not _is_plain_value(item):
        raise ContentError("application/cbor must hold one plain value", payload, 0)
    return [Lwm2mValue(base, conform(item, types(base)))]


def _is_plain_value(item: Any) -> bool:
    return item is None or isinstance(item, (bool, int, float, str, bytes))


def _encode_plain_cbor(values: Sequence[Lwm2mValue], types: Types) -> bytes:
    import cbor2

    item = _single(values, "application/cbor")
    return cbor2.dumps(conform(item.value, types(item.path)))


# ---------------------------------------------------------------------------------------------
# Dispatch


def decode(fmt: int, payload: bytes, base: Path, types: Types = resource_type, *,
           now: float | None = None) -> list[Lwm2mValue]:
    """Decode ``payload`` of content format ``fmt`` answering a request on ``base``.

    ``types`` types values that the format does not type itself (TLV, text). ``now`` (the
    receive time, UTC epoch seconds) places SenML/JSON relative times; without it they
    decode with ``ts=None``.
    """
    payload = bytes(payload)
    if fmt in (ContentFormat.LWM2M_TLV, ContentFormat.OLD_TLV):
        from . import tlv
        return tlv.decode(payload, base, types)
    if fmt == ContentFormat.SENML_JSON:
        from . import senml
        return senml.decode_json(payload, base, types, now=now)
    if fmt == ContentFormat.SENML_CBOR:
        from . import senml
        return senml.decode_cbor(payload, base, types, now=now)
    if fmt in (ContentFormat.LWM2M_JSON, ContentFormat.OLD_JSON):
        from . import lwm2m_json
        return lwm2m_json.decode(payload, base, types, now=now)
    if fmt == ContentFormat.LWM2M_CBOR:
        from . import lwm2m_cbor
        return lwm2m_cbor.decode(payload, base, types)
    if fmt == ContentFormat.TEXT:
        return _decode_text(payload, base, types)
    if fmt == ContentFormat.OPAQUE:
        return [Lwm2mValue(base, payload)]
    if fmt == ContentFormat.CBOR:
        return _decode_plain_cbor(payload, base, types)
    if fmt == ContentFormat.LINK_FORMAT:
        raise ContentError("link-format carries links, not values: use linkformat.parse_links",
                           payload, 0)
    raise ContentError(f"unknown content format {fmt}", payload, 0)


def encode(fmt: int, values: Sequence[Lwm2mValue], base: Path,
           types: Types = resource_type) -> bytes:
    """Encode ``values`` as the payload of a request on ``base`` in content format ``fmt``.

    ``types`` lets a float resource written with an int go out as a float, and an object
    link (``"3:0"``) go out as one. Values that the format cannot carry raise
    :class:`hub.contracts.EncodeError`; an unknown format raises :class:`ContentError`.
    """
    if fmt in (ContentFormat.LWM2M_TLV, ContentFormat.OLD_TLV):
        from . import tlv
        return tlv.encode(values, base, types)
    if fmt == ContentFormat.SENML_JSON:
        from . import senml
        return senml.encode_json(values, base, types)
    if fmt == ContentFormat.SENML_CBOR:
        from . import senml
        return senml.encode_cbor(values, base, types)
    if fmt in (ContentFormat.LWM2M_JSON, ContentFormat.OLD_JSON):
        from . import lwm2m_json
        return lwm2m_json.encode(values, base, types)
    if fmt == ContentFormat.LWM2M_CBOR:
        from . import lwm2m_cbor
        return lwm2m_cbor.encode(values, base, types)
    if fmt == ContentFormat.TEXT:
        return _encode_text(values, types)
    if fmt == ContentFormat.OPAQUE:
        return _encode_opaque(values)
    if fmt == ContentFormat.CBOR:
        return _encode_plain_cbor(values, types)
    raise ContentError(f"cannot encode content format {fmt}")


def float_fits_single(value: float) -> bool:
    """Whether a 4-byte float carries ``value`` exactly (TLV picks the shorter form)."""
    try:
        return struct.unpack(">f", struct.pack(">f", value))[0] == value or math.isnan(value)
    except OverflowError:
        return False
