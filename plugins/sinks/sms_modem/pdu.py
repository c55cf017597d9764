"""SMS-SUBMIT PDUs for ``AT+CMGS`` in PDU mode: sans-IO, text in, hex out.

Layout of one part (3GPP TS 23.040 §9.2.2.2, preceded by the SMSC field of TS 27.005 §3.1)::

    SCA | first octet | TP-MR | TP-DA | TP-PID | TP-DCS | [TP-VP] | TP-UDL | TP-UD

Text goes in the GSM 7-bit default alphabet (TS 23.038 §6.2.1, with its extension table
§6.2.1.1) when every character has a code there, else in UCS-2 (TS 23.038 §5: DCS 0x08);
Chinese text is always UCS-2. A text too long for one SMS is split into parts each starting
with a user data header holding the concatenation element, IEI 0x00 with an 8-bit reference
(TS 23.040 §9.2.3.24.1): 153 septets or 67 UCS-2 code units per part instead of 160 / 70.
A part never ends inside an escape sequence or a surrogate pair: a phone that shows a part
alone would otherwise show garbage.
"""

from __future__ import annotations

from typing import NamedTuple

# TS 23.038 §6.2.1: the 128 characters of the default alphabet, by code. \x1b is the escape
# to the extension table and is never produced from text. Code 0x09 is "Ç" (capital C with
# cedilla) per the current spec text.
GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# TS 23.038 §6.2.1.1: characters reached with ESC (0x1B) followed by this code.
GSM7_EXTENSION = {
    "\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F,
    "[": 0x3C, "~": 0x3D, "]": 0x3E, "|": 0x40, "€": 0x65,
}
ESC = 0x1B

_BASIC_CODE = {ch: i for i, ch in enumerate(GSM7_BASIC) if i != ESC}

DCS_GSM7 = 0x00
DCS_UCS2 = 0x08

#: User-data capacity of one SMS (TS 23.040 §9.2.3.16: 140 octets).
MAX_SEPTETS = 160
MAX_UCS2_UNITS = 70
#: With the 6-octet concatenation header (UDHL + IEI + IEDL + ref + total + seq).
PART_SEPTETS = 153
PART_UCS2_UNITS = 67
CONCAT_UDH_LEN = 6


class PduError(ValueError):
    """The message cannot be expressed as SMS-SUBMIT PDUs (bad number, too many parts)."""


class Part(NamedTuple):
    """One ``AT+CMGS`` worth: the hex to send after the prompt, and the length to announce
    (TS 27.005 §3.5.1: octets of the TPDU, the SMSC field not counted)."""

    pdu_hex: str
    tpdu_length: int


# ---------------------------------------------------------------------------- alphabets


def gsm7_units(text: str) -> list[tuple[int, ...]] | None:
    """Per character, its septets (one, or ESC and one); ``None`` if any character has no
    GSM 7-bit code (the text then goes as UCS-2)."""
    out: list[tuple[int, ...]] = []
    for ch in text:
        if ch in _BASIC_CODE:
            out.append((_BASIC_CODE[ch],))
        elif ch in GSM7_EXTENSION:
            out.append((ESC, GSM7_EXTENSION[ch]))
        else:
            return None
    return out


def ucs2_units(text: str) -> list[bytes]:
    """Per character, its UTF-16BE bytes: 2, or 4 for a surrogate pair (outside the BMP,
    e.g. emoji and CJK extension B; phones decode UCS-2 parts as UTF-16 in practice)."""
    return [ch.encode("utf-16-be") for ch in text]


def pack_septets(septets: list[int] | bytes, fill_bits: int = 0) -> bytes:
    """Pack 7-bit values LSB first (TS 23.038 §6.1.2.1.1), after ``fill_bits`` zero bits
    that bring a user data header to a septet boundary (TS 23.040 §9.2.3.24)."""
    acc = 0
    nbits = fill_bits
    out = bytearray()
    for s in septets:
        acc |= (s & 0x7F) << nbits
        nbits += 7
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8
    if nbits:
        out.append(acc & 0xFF)
    return bytes(out)


def _group(units: list, size_of, limit: int) -> list[list]:
    """Greedy split of whole units (never inside one) into runs of at most ``limit``."""
    parts: list[list] = [[]]
    used = 0
    for u in units:
        n = size_of(u)
        if used + n > limit:
            parts.append([])
            used = 0
        parts[-1].append(u)
        used += n
    return parts


# ---------------------------------------------------------------------------- addresses


def semi_octets(digits: str) -> bytes:
    """Digits as swapped nibbles, an odd count padded with F (TS 23.040 §9.1.2.3)."""
    if len(digits) % 2:
        digits += "F"
    return bytes.fromhex("".join(digits[i + 1] + digits[i] for i in range(0, len(digits), 2)))


def _split_number(number: str) -> tuple[int, str]:
    """Type of address and digits: ``+`` means international, ISDN plan (0x91); otherwise
    unknown type, ISDN plan (0x81) (TS 24.008 §10.5.4.7, TS 23.040 §9.1.2.5)."""
    digits = number[1:] if number.startswith("+") else number
    if not digits.isascii() or not digits.isdigit() or not 1 <= len(digits) <= 20:
        raise PduError(f"{number!r} is not a phone number (digits, optionally after '+')")
    return (0x91 if number.startswith("+") else 0x81), digits


def encode_destination(number: str) -> bytes:
    """TP-DA: length in digits, type of address, semi-octets (TS 23.040 §9.1.2.5)."""
    toa, digits = _split_number(number)
    if len(digits) > 20:
        raise PduError(f"{number!r} has more than 20 digits")
    return bytes([len(digits), toa]) + semi_octets(digits)


def encode_smsc(number: str | None) -> bytes:
    """The SMSC field of TS 27.005 §3.1 (TS 24.011 RP-address): ``00`` means "use the
    SIM's"; otherwise its length counts octets, the type octet included."""
    if not number:
        return b"\x00"
    toa, digits = _split_number(number)
    body = bytes([toa]) + semi_octets(digits)
    return bytes([len(body)]) + body


def relative_validity(seconds: float) -> int:
    """TP-VP in relative format (TS 23.040 §9.2.3.12.1), rounded up to the next step so a
    message is never dropped earlier than asked: 5-minute steps to 12 h, 30-minute steps to
    24 h, days to 30 days, weeks to 63 weeks."""
    minutes = seconds / 60
    if minutes <= 12 * 60:
        return max(0, _ceil(minutes / 5) - 1)
    if minutes <= 24 * 60:
        return 143 + _ceil((minutes - 12 * 60) / 30)
    days = minutes / (24 * 60)
    if days <= 30:
        return 166 + _ceil(days)
    return min(255, 192 + _ceil(days / 7))


def _ceil(x: float) -> int:
    n = int(x)
    return n + (1 if x > n else 0)


# ---------------------------------------------------------------------------- SMS-SUBMIT


def split_text(text: str) -> tuple[int, list[bytes], list[int]]:
    """The DCS and, per part, the encoded user data without header plus its length in the
    units TP-UDL counts (septets for GSM 7-bit, octets for UCS-2)."""
    gsm = gsm7_units(text)
    if gsm is not None:
        total = sum(len(u) for u in gsm)
        groups = [gsm] if total <= MAX_SEPTETS else _group(gsm, len, PART_SEPTETS)
        septets = [[s for u in g for s in u] for g in groups]
        return DCS_GSM7, [bytes(s) for s in septets], [len(s) for s in septets]
    ucs = ucs2_units(text)
    total = sum(len(u) for u in ucs) // 2
    groups = [ucs] if total <= MAX_UCS2_UNITS else _group(
        ucs, lambda u: len(u) // 2, PART_UCS2_UNITS)
    data = [b"".join(g) for g in groups]
    return DCS_UCS2, data, [len(d) for d in data]


def user_data(dcs: int, payload: bytes, header: bytes = b"") -> tuple[int, bytes]:
    """TP-UDL and TP-UD for one part. For GSM 7-bit, ``payload`` is one septet per byte and
    the header (UDHL included) is followed by fill bits up to a septet boundary, and UDL
    counts the header's septets too (TS 23.040 §9.2.3.16, §9.2.3.24)."""
    if dcs == DCS_UCS2:
        return len(header) + len(payload), header + payload
    header_bits = len(header) * 8
    fill = (7 - header_bits % 7) % 7
    header_septets = (header_bits + fill) // 7
    return header_septets + len(payload), header + pack_septets(payload, fill)


def encode_submit(number: str, text: str, *, smsc: str | None = None,
                  validity: float | None = None, reference: int = 0,
                  max_parts: int = 255) -> list[Part]:
    """The SMS-SUBMIT PDUs carrying ``text`` to ``number``, one per part.

    ``reference`` (0..255) is the concatenation reference; it must differ between
    concurrent long messages to one phone. ``validity`` in seconds sets TP-VP (relative);
    ``None`` leaves it out and the SMSC applies its default.
    """
    dcs, payloads, _ = split_text(text)
    if len(payloads) > max_parts:
        raise PduError(f"the text needs {len(payloads)} parts, more than max_parts "
                       f"({max_parts})")
    sca = encode_smsc(smsc)
    da = encode_destination(number)
    concatenated = len(payloads) > 1
    # first octet: TP-MTI=01 (SUBMIT), TP-RD=0, TP-VPF=10 (relative) or 00, TP-SRR=0,
    # TP-UDHI when a header leads the user data, TP-RP=0 (TS 23.040 §9.2.2.2)
    first = 0x01 | (0x10 if validity is not None else 0) | (0x40 if concatenated else 0)
    vp = bytes([relative_validity(validity)]) if validity is not None else b""
    parts = []
    for seq, payload in enumerate(payloads, 1):
        header = (bytes([CONCAT_UDH_LEN - 1, 0x00, 0x03, reference & 0xFF, len(payloads), seq])
                  if concatenated else b"")
        udl, ud = user_data(dcs, payload, header)
        # TP-MR 00: the modem assigns the message reference and reports it in +CMGS
        tpdu = bytes([first, 0x00]) + da + bytes([0x00, dcs]) + vp + bytes([udl]) + ud
        parts.append(Part((sca + tpdu).hex().upper(), len(tpdu)))
    return parts
