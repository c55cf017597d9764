"""How many SMS parts a text takes (GSM 03.38 / 3GPP TS 23.040).

A text is GSM-7 when every character is in the GSM default alphabet or its extension
table (an extension character costs two septets): 160 septets in one part, 153 per part of
a concatenated message. Anything else (Chinese) is UCS-2, counted in UTF-16 code units:
70 in one part, 67 per part (the user data header takes the rest).
"""

from __future__ import annotations

GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM_EXTENSION = frozenset("^{}\\[~]|€\f")

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


def is_gsm7(text: str) -> bool:
    return all(c in GSM_BASIC or c in GSM_EXTENSION for c in text)


def _sizes(text: str) -> list[int]:
    """Per character: septets for a GSM-7 text, UTF-16 code units otherwise."""
    if is_gsm7(text):
        return [2 if c in GSM_EXTENSION else 1 for c in text]
    return [len(c.encode("utf-16-le")) // 2 for c in text]


def units(text: str) -> int:
    """Septets for a GSM-7 text, UTF-16 code units otherwise."""
    return sum(_sizes(text))


def parts(text: str) -> int:
    """Number of parts ``text`` is sent as (0 for an empty text). A character is never
    split between parts (an escape pair, a surrogate pair), as a modem's PDU encoder
    splits it: counting units / 153 would sometimes promise one part too few."""
    sizes = _sizes(text)
    n = sum(sizes)
    single, part = (GSM7_SINGLE, GSM7_PART) if is_gsm7(text) else (UCS2_SINGLE, UCS2_PART)
    if n <= single:
        return 1 if n else 0
    count, used = 1, 0
    for size in sizes:
        if used + size > part:
            count, used = count + 1, 0
        used += size
    return count


def capacity(gsm7: bool, max_parts: int) -> int:
    """Units that fit in ``max_parts`` parts."""
    single, part = (GSM7_SINGLE, GSM7_PART) if gsm7 else (UCS2_SINGLE, UCS2_PART)
    return single if max_parts <= 1 else part * max_parts


def fit(text: str, max_parts: int, reserved: int = 0) -> str:
    """``text`` cut (with "…") to fit ``max_parts`` parts, ``reserved`` units being taken by
    the provider (a signature such as 【某某物业】 that cloud providers prepend)."""
    pad = "中" * reserved  # a signature is Chinese: UCS-2
    if parts(text + pad) <= max_parts:
        return text
    room = capacity(False, max_parts) - reserved - 1  # "…" makes it UCS-2
    out, used = [], 0
    for c in text:
        u = len(c.encode("utf-16-le")) // 2
        if used + u > room:
            break
        out.append(c)
        used += u
    while out and parts("".join(out) + "…" + pad) > max_parts:
        out.pop()  # a surrogate pair at a part boundary takes a unit more
    return "".join(out) + "…"
