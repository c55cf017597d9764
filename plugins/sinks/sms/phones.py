"""Phone numbers: E.164 or a mainland 11-digit mobile number, normalised to E.164."""

from __future__ import annotations

import re
from typing import Any

from hub.validate import Invalid, describe

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
#: mainland mobile numbers: 11 digits, 13x-19x (landlines cannot receive a text)
_MAINLAND = re.compile(r"1[3-9][0-9]{9}")
_SEPARATORS = re.compile(r"[\s\-()]")


def normalise(value: Any) -> str:
    """``"+8613800138000"`` for ``13800138000``, ``"138-0013-8000"``, ``"+86 138 0013 8000"``
    or ``"008613800138000"``; other countries as E.164. Raises :class:`Invalid`."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # an unquoted number in YAML
    if not isinstance(value, str):
        raise Invalid(f"expected a phone number, got {describe(value)}")
    text = _SEPARATORS.sub("", value)
    if text.startswith("00"):
        text = "+" + text[2:]
    if _MAINLAND.fullmatch(text):
        return "+86" + text
    if not _E164.fullmatch(text):
        raise Invalid(f"{value!r} is neither an E.164 number (+<country><number>) nor an "
                      "11-digit mainland mobile number (1[3-9]xxxxxxxxx)")
    if text.startswith("+86") and not _MAINLAND.fullmatch(text[3:]):
        raise Invalid(f"{value!r}: a +86 number must be an 11-digit mobile number "
                      "(1[3-9]xxxxxxxxx); landlines cannot receive a text")
    return text
