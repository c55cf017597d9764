"""A scripted GSM modem on the master side of a pseudo-terminal, for the ``gsm_modem`` tests.

It answers the AT dialogue as a real modem does (echo until ``ATE0``, ``OK``, the ``> ``
prompt, ``+CMGS: <mr>``), and decodes every PDU it is given with its own parser below,
written from the SMS-SUBMIT layout of 3GPP TS 23.040 §9.2.2.2 and the alphabet of TS 23.038
§6.2.1, not with the hub's encoder. Whatever it finds wrong goes to :attr:`problems` and is
answered ``+CMS ERROR: 304`` (invalid PDU mode parameter), so a test sees both.
"""

from __future__ import annotations

import os
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# TS 23.038 §6.2.1 figure, column by column (b7 b6 b5 = 0..7), rows b4..b1 = 0..15.
_COLUMNS = (
    "@£$¥èéùìòÇ\nØø\rÅå",
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ",
    " !\"#¤%&'()*+,-./",
    "0123456789:;<=>?",
    "¡ABCDEFGHIJKLMNO",
    "PQRSTUVWXYZÄÖÑÜ§",
    "¿abcdefghijklmno",
    "pqrstuvwxyzäöñüà",
)
DEFAULT_ALPHABET = {col * 16 + row: ch for col, chars in enumerate(_COLUMNS)
                    for row, ch in enumerate(chars)}
# TS 23.038 §6.2.1.1, reached after 0x1B
EXTENSION = {0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[", 0x3D: "~",
             0x3E: "]", 0x40: "|", 0x65: "€"}


class BadPdu(ValueError):
    pass


@dataclass
class Submit:
    """One decoded SMS-SUBMIT."""

    smsc: str
    first_octet: int
    udhi: bool
    vpf: int
    reference: int               # TP-MR
    number: str                  # "+..." for type 0x91
    toa: int
    pid: int
    dcs: int
    validity: bytes
    udl: int
    concat: tuple[int, int, int] | None  # (ref, total, seq) from IEI 00
    text: str
    tpdu_length: int


def _digits(octets: bytes, count: int) -> str:
    out = ""
    for b in octets:
        out += str(b & 0x0F) + ("" if (b >> 4) == 0x0F else str(b >> 4))
    return out[:count]


def _septets(ud: bytes, total: int, skip_bits: int) -> list[int]:
    bits = int.from_bytes(ud, "little")
    return [(bits >> (skip_bits + 7 * i)) & 0x7F for i in range((total * 7 - skip_bits) // 7)]


def decode_submit(pdu_hex: str) -> Submit:
    """Decode ``SCA + TPDU`` as sent after ``AT+CMGS``; raises BadPdu."""
    try:
        raw = bytes.fromhex(pdu_hex)
    except ValueError:
        raise BadPdu(f"not hex: {pdu_hex[:40]!r}") from None
    try:
        return _decode(raw)
    except IndexError:
        raise BadPdu("PDU ends early") from None


def _decode(raw: bytes) -> Submit:
    sca_len = raw[0]
    smsc = ""
    if sca_len:
        smsc = ("+" if raw[1] == 0x91 else "") + _digits(raw[2:1 + sca_len], 2 * (sca_len - 1))
    t = raw[1 + sca_len:]
    fo = t[0]
    if fo & 0x03 != 0x01:
        raise BadPdu(f"TP-MTI is {fo & 3}, not 01 (SMS-SUBMIT)")
    vpf = (fo >> 3) & 0x03
    udhi = bool(fo & 0x40)
    mr = t[1]
    da_digits = t[2]
    toa = t[3]
    da_octets = (da_digits + 1) // 2
    number = _digits(t[4:4 + da_octets], da_digits)
    if toa == 0x91:
        number = "+" + number
    i = 4 + da_octets
    pid, dcs = t[i], t[i + 1]
    i += 2
    vp_len = {0: 0, 2: 1, 1: 7, 3: 7}[vpf]
    vp = t[i:i + vp_len]
    i += vp_len
    udl = t[i]
    ud = t[i + 1:]
    concat = None
    udh_len = 0
    if udhi:
        udh_len = ud[0] + 1
        j = 1
        while j < udh_len:
            iei, iel = ud[j], ud[j + 1]
            if iei == 0x00:
                if iel != 3:
                    raise BadPdu(f"concatenation IE length {iel}, not 3")
                concat = (ud[j + 2], ud[j + 3], ud[j + 4])
            j += 2 + iel
    if dcs == 0x08:
        if len(ud) != udl or (udl - udh_len) % 2:
            raise BadPdu(f"UCS-2 UDL {udl} does not match {len(ud)} octets of user data")
        text = ud[udh_len:].decode("utf-16-be")
    elif dcs == 0x00:
        if len(ud) != (udl * 7 + 7) // 8:
            raise BadPdu(f"GSM 7-bit UDL {udl} does not match {len(ud)} octets")
        header_bits = udh_len * 8
        skip = header_bits + (-header_bits) % 7
        text = ""
        escape = False
        for s in _septets(ud, udl, skip):
            if escape:
                text += EXTENSION.get(s, " ")
                escape = False
            elif s == 0x1B:
                escape = True
            else:
                text += DEFAULT_ALPHABET[s]
        if escape:
            raise BadPdu("user data ends inside an escape sequence")
    else:
        raise BadPdu(f"TP-DCS {dcs:#04x} is neither GSM 7-bit nor UCS-2")
    return Submit(smsc, fo, udhi, vpf, mr, number, toa, pid, dcs, bytes(vp), udl, concat, text,
                  len(t))


def reassemble(parts: list[Submit]) -> list[tuple[str, str]]:
    """(number, text) per message, concatenated parts joined by reference in seq order."""
    out: list[tuple[str, str]] = []
    pending: dict[tuple[str, int], dict[int, Submit]] = {}
    for p in parts:
        if p.concat is None:
            out.append((p.number, p.text))
            continue
        ref, total, seq = p.concat
        got = pending.setdefault((p.number, ref), {})
        got[seq] = p
        if len(got) == total:
            out.append((p.number, "".join(got[k].text for k in sorted(got))))
            del pending[(p.number, ref)]
    return out


# ---------------------------------------------------------------------------- the modem


@dataclass
class Script:
    """What the modem does. ``cms_errors``: +CMGS call number (from 0) → +CMS ERROR code;
    ``silent_from``: from this +CMGS call on, swallow the PDU and answer nothing;
    ``pin``: the SIM asks for this PIN; ``urcs``: unsolicited lines sent before each
    final result, in turn."""

    cms_errors: dict[int, int] = field(default_factory=dict)
    silent_from: int | None = None
    pin: str | None = None
    urcs: tuple[str, ...] = ()


class ScriptedModem:
    """The modem behind the master side of a pty; the hub opens :attr:`path` (the slave)."""

    def __init__(self, reactor: Any, script: Script | None = None,
                 link: str | None = None) -> None:
        self.reactor = reactor
        self.script = script or Script()
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo or line editing before the hub's pyserial opens it
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self._slave)
        self.link = link
        if link:
            if os.path.lexists(link):
                os.unlink(link)
            os.symlink(self.path, link)
        self.echo = True
        self.unlocked = self.script.pin is None
        self.commands: list[str] = []
        self.submits: list[Submit] = []
        self.problems: list[str] = []
        self.swallowed = 0  # PDUs left unanswered (``silent_from``)
        self.on_submit: Callable[[Submit], None] | None = None
        self._buf = bytearray()
        self._pdu: bytearray | None = None
        self._pdu_len = 0
        self._cmgs_calls = 0
        self._mr = 0
        self._urc = 0
        self._closed = False
        reactor.addReader(self)

    # IReadDescriptor
    def fileno(self) -> int:
        return self.master

    def logPrefix(self) -> str:
        return "ScriptedModem"

    def connectionLost(self, reason: Any) -> None:
        pass

    def doRead(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except BlockingIOError:
            return
        except OSError:
            return  # EIO while nobody has the slave open: ours stays open, so rare
        self.feed(data)

    def vanish(self) -> None:
        """The USB modem is unplugged: the tty and its udev link go away."""
        if self._closed:
            return
        self._closed = True
        self.reactor.removeReader(self)
        os.close(self.master)
        os.close(self._slave)
        if self.link and os.path.islink(self.link):
            os.unlink(self.link)

    # ---- the dialogue

    def _write(self, data: bytes) -> None:
        if not self._closed:
            os.write(self.master, data)

    def _final(self, text: str) -> None:
        if self.script.urcs:
            urc = self.script.urcs[self._urc % len(self.script.urcs)]
            self._urc += 1
            self._write(f"\r\n{urc}\r\n".encode())
        self._write(f"\r\n{text}\r\n".encode())

    def feed(self, data: bytes) -> None:
        assert len(self._buf) < 65536, "the hub sent an endless line"
        for b in data:
            if self._pdu is not None:
                self._pdu_byte(b)
                continue
            if b == 0x1B:
                continue  # ESC outside a prompt: nothing to cancel
            if self.echo:
                self._write(bytes([b]))
            if b == 0x0D:
                line = self._buf.decode("ascii", "replace").strip()
                self._buf.clear()
                if line:
                    self._command(line)
            elif b != 0x0A:
                self._buf.append(b)

    def _command(self, line: str) -> None:
        self.commands.append(line)
        up = line.upper()
        if up == "AT":
            self._final("OK")
        elif up == "ATE0":
            self.echo = False
            self._final("OK")
        elif up == "AT+CMEE=1" or up == "AT+CMGF=0":
            self._final("OK")
        elif up == "AT+CPIN?":
            self._write(b"\r\n+CPIN: READY\r\n" if self.unlocked else b"\r\n+CPIN: SIM PIN\r\n")
            self._final("OK")
        elif up.startswith("AT+CPIN="):
            if line[8:].strip('"') == self.script.pin:
                self.unlocked = True
                self._final("OK")
            else:
                self._final("+CME ERROR: 16")  # TS 27.007 §9.2.1: incorrect password
        elif up.startswith("AT+CMGS="):
            if not self.unlocked:
                self._final("+CMS ERROR: 311")
                return
            self._pdu_len = int(up[8:])
            self._pdu = bytearray()
            self._write(b"\r\n> ")
        else:
            self._final("ERROR")

    def _pdu_byte(self, b: int) -> None:
        assert self._pdu is not None
        if b == 0x1B:  # ESC cancels the message (TS 27.005 §3.5.1)
            self._pdu = None
            self._final("OK")
            return
        if b != 0x1A:
            if b not in (0x0D, 0x0A):
                self._pdu.append(b)
            return
        pdu_hex = self._pdu.decode("ascii", "replace")
        self._pdu = None
        call = self._cmgs_calls
        self._cmgs_calls += 1
        if self.script.silent_from is not None and call >= self.script.silent_from:
            self.swallowed += 1
            return
        try:
            sub = decode_submit(pdu_hex)
        except BadPdu as e:
            self.problems.append(f"{e}: {pdu_hex}")
            self._final("+CMS ERROR: 304")
            return
        if sub.tpdu_length != self._pdu_len:
            self.problems.append(f"AT+CMGS={self._pdu_len} but the TPDU has "
                                 f"{sub.tpdu_length} octets")
            self._final("+CMS ERROR: 304")
            return
        if call in self.script.cms_errors:
            self._final(f"+CMS ERROR: {self.script.cms_errors[call]}")
            return
        self.submits.append(sub)
        if self.on_submit:
            self.on_submit(sub)
        self._mr = (self._mr + 1) % 256
        self._write(f"\r\n+CMGS: {self._mr}\r\n".encode())
        self._final("OK")
