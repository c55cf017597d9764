"""CoRE Link Format (RFC 6690) as LwM2M registration and discovery payloads use it.

A Register payload such as ``</>;rt="oma.lwm2m";ct=11543,</1/0>,</3/0>,</3303>;ver=1.1``
lists the device's objects and object instances. The link whose ``rt`` is ``oma.lwm2m``
names the root under which the LwM2M objects sit; a device may move it (``</lwm2m>`` then
``</lwm2m/3/0>``), so paths are taken relative to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NoReturn

from hub.contracts.lwm2m import Path

from .content import ContentError

_MAX_ID = 65535
#: RFC 8288 token characters (RFC 6690 parmname), plus "*" for RFC 8187 extended names.
_PARMNAME = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                      "!#$&+-.^_`|~*")
_SPACE = " \t\r\n"
_LWM2M_ROOT_TYPE = "oma.lwm2m"


@dataclass(frozen=True, slots=True)
class Link:
    """One link: ``target`` as written, ``path`` when the target is an LwM2M object path
    (``None`` for the root and for non-numeric targets), ``attrs`` with valueless
    attributes as ``True`` (names lower-cased; the first of repeated names wins)."""

    target: str
    path: Path | None
    attrs: dict[str, str | bool] = field(default_factory=dict)


def parse_links(payload: bytes | str) -> list[Link]:
    """Parse a link-format payload; an empty payload has no links."""
    if isinstance(payload, bytes | bytearray | memoryview):
        raw = bytes(payload)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ContentError("link-format payload is not UTF-8", raw, exc.start) from None
    else:
        text = payload
    parsed = _Parser(text).links()
    root = _root_target(parsed)
    return [Link(target, _path_of(target, root), attrs) for target, attrs in parsed]


def registered_paths(links: list[Link]) -> list[Path]:
    """The object and object-instance paths of a registration, in order, without repeats."""
    seen: dict[Path, None] = {}
    for link in links:
        if link.path is not None and 1 <= len(link.path) <= 2:
            seen.setdefault(link.path, None)
    return list(seen)


def _root_target(parsed: list[tuple[str, dict[str, str | bool]]]) -> str:
    for target, attrs in parsed:
        rt = attrs.get("rt")
        if isinstance(rt, str) and _LWM2M_ROOT_TYPE in rt.split():
            return target.rstrip("/")
    return ""


def _path_of(target: str, root: str) -> Path | None:
    if root:
        if not target.startswith(root + "/"):
            return None
        target = target[len(root):]
    parts = target.strip("/").split("/")
    if parts == [""] or len(parts) > 4:
        return None
    if not all(p.isascii() and p.isdigit() and int(p) <= _MAX_ID for p in parts):
        return None
    return tuple(int(p) for p in parts)


class _Parser:
    """A hand-written scanner, so that an error can name the offset where it went wrong."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def links(self) -> list[tuple[str, dict[str, str | bool]]]:
        found: list[tuple[str, dict[str, str | bool]]] = []
        self._skip_space()
        while self.pos < len(self.text):
            found.append(self._link())
            self._skip_space()
            if self.pos >= len(self.text):
                break
            if self.text[self.pos] != ",":
                self._fail("expected ',' or ';' after a link")
            self.pos += 1
            # Some clients end the list with a comma; nothing follows, so nothing is lost.
            self._skip_space()
        return found

    def _link(self) -> tuple[str, dict[str, str | bool]]:
        if self.text[self.pos] != "<":
            self._fail("expected '<' starting a link")
        end = self.text.find(">", self.pos + 1)
        if end < 0:
            self._fail("'<' without a closing '>'")
        target = self.text[self.pos + 1:end]
        if any(c in target for c in "<\"," + _SPACE):
            self._fail("link target holds a character a URI cannot")
        self.pos = end + 1
        attrs: dict[str, str | bool] = {}
        while True:
            self._skip_space()
            if self.pos >= len(self.text) or self.text[self.pos] != ";":
                return target, attrs
            self.pos += 1
            self._skip_space()
            name = self._name()
            self._skip_space()
            value: str | bool = True
            if self.pos < len(self.text) and self.text[self.pos] == "=":
                self.pos += 1
                self._skip_space()
                value = self._value()
            attrs.setdefault(name, value)

    def _name(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _PARMNAME:
            self.pos += 1
        if self.pos == start:
            self._fail("expected an attribute name after ';'")
        return self.text[start:self.pos].lower()

    def _value(self) -> str:
        if self.pos < len(self.text) and self.text[self.pos] == '"':
            return self._quoted()
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in ',;"' + _SPACE:
            self.pos += 1
        if self.pos == start:
            self._fail("expected an attribute value after '='")
        return self.text[start:self.pos]

    def _quoted(self) -> str:
        start = self.pos
        self.pos += 1
        chars: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == '"':
                self.pos += 1
                return "".join(chars)
            if char == "\\" and self.pos + 1 < len(self.text):
                self.pos += 1
                char = self.text[self.pos]
            chars.append(char)
            self.pos += 1
        self.pos = start
        self._fail("quoted attribute value without a closing '\"'")

    def _skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _SPACE:
            self.pos += 1

    def _fail(self, message: str) -> NoReturn:
        data = self.text.encode("utf-8", "surrogatepass")
        offset = len(self.text[:self.pos].encode("utf-8", "surrogatepass"))
        raise ContentError(f"link-format: {message} at offset {offset}", data, offset)
