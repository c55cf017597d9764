"""What a transparent 4G/GPRS DTU puts around the serial bytes: pure functions, no sockets.

A DTU dials out to the hub and then copies bytes between its RS-485 port and the socket.
Around those bytes it may add, depending on its configuration:

* a **registration packet** (注册包): its IMEI, ICCID or a user string, with no framing at
  all, sent once after connecting ("first packet", "first N bytes", or found by a regex) or
  **prefixed to every packet** it sends;
* **heartbeats** (心跳包): a configured byte string sent when the line is idle.

The transport is configured per listener with the rule its DTUs use (see
``research/protocols.md`` §2); this module applies it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hub.validate import Invalid, Section, choice, integer, string

#: A registration id longer than this is not an id (USR DTUs allow 40 user bytes)
MAX_ID_BYTES = 64


class RegistrationError(ValueError):
    """The first bytes do not hold an id under the listener's rule."""


@dataclass(frozen=True)
class RegistrationRule:
    """How a listener's DTUs say who they are.

    ``mode``: ``first_packet`` (the whole first TCP read is the id), ``first_bytes`` (the
    first ``length`` bytes), ``regex`` (``pattern`` matched at the start of the stream; its
    first group, or the whole match, is the id) or ``prefix`` (the id of ``length`` bytes
    comes first, and is repeated in front of every later packet).
    """

    mode: str = "first_packet"
    length: int = 0
    pattern: re.Pattern[bytes] | None = None
    encoding: str = "ascii"  # "ascii" or "hex": how the id bytes become the id string

    def extract(self, data: bytes, first_read: bool) -> tuple[str, bytes, bytes] | None:
        """``(id, its raw bytes, remaining bytes)`` once ``data`` (everything received so
        far) holds the id; ``None`` while more bytes are needed. The raw bytes are what a
        ``prefix`` DTU repeats (with ``encoding: hex`` the id is their hex text, not them).
        Raises :class:`RegistrationError`."""
        if self.mode == "first_packet":
            if not first_read:
                raise RegistrationError("first_packet mode takes the id from the first read")
            raw, rest = data.strip(b"\r\n\x00 "), b""
        elif self.mode in ("first_bytes", "prefix"):
            if len(data) < self.length:
                return None
            raw, rest = data[: self.length], data[self.length :]
        else:
            assert self.pattern is not None
            m = self.pattern.match(data)
            if m is None:
                if len(data) >= MAX_ID_BYTES:
                    raise RegistrationError("the registration pattern does not match")
                return None
            raw = m.group(1) if m.re.groups else m.group(0)
            rest = data[m.end() :]
        if not raw or len(raw) > MAX_ID_BYTES:
            raise RegistrationError(f"a registration id of {len(raw)} bytes")
        return self.id_of(raw), raw, rest

    def id_of(self, raw: bytes) -> str:
        if self.encoding == "hex":
            return raw.hex().upper()
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise RegistrationError(
                "the registration id is not ASCII (use encoding: hex)") from None
        if not text.isprintable():
            raise RegistrationError("the registration id has control characters")
        return text


def check_registration(section: Section) -> RegistrationRule:
    mode = section.get("mode", choice("first_packet", "first_bytes", "regex", "prefix"),
                       "first_packet")
    length = section.get("length", integer(1, MAX_ID_BYTES), 0)
    pattern = None
    if mode in ("first_bytes", "prefix") and not length:
        section.checker.error(section.path / "length", f"is required with mode {mode}")
    if mode == "regex":
        text = section.get("pattern", string())
        if text is not None:
            try:
                pattern = re.compile(text.encode())
            except re.error as e:
                section.checker.error(section.path / "pattern", f"not a valid regex: {e}")
    encoding = section.get("encoding", choice("ascii", "hex"), "ascii")
    section.finish()
    return RegistrationRule(mode, length or 0, pattern, encoding)


def parse_bytes(value: object) -> bytes:
    """A configured byte string: ``"hex:FE FE 01"`` or plain ASCII text."""
    if not isinstance(value, str) or not value:
        raise Invalid(f"expected a non-empty string ('hex:...' or ASCII), got {value!r}")
    if value.startswith("hex:"):
        try:
            return bytes.fromhex(value[4:])
        except ValueError:
            raise Invalid(f"{value!r} is not valid hex") from None
    return value.encode("ascii", errors="strict")


def strip_leading(data: bytes, patterns: tuple[bytes, ...]) -> tuple[bytes, int]:
    """Drop any of ``patterns`` (a repeated id prefix) from the start of ``data``,
    repeatedly. Returns the rest and how many patterns were dropped.

    Only the start is examined: the transport applies it where a read starts, where a DTU
    puts its prefix (which may fall inside a frame the DTU sent in two packets). Between
    frames the framer recognises the patterns itself (``ResponseFramer(ignore=...)``).
    """
    dropped = 0
    changed = True
    while changed and data:
        changed = False
        for p in patterns:
            if data.startswith(p):
                data = data[len(p) :]
                dropped += 1
                changed = True
    return data, dropped

