"""Message catalogues and locale formatting of the web console.

Strings live in one JSON catalogue per language (``hub/console/locale/<lang>.json``, a flat
``{"key": "text"}`` map with ``{name}`` placeholders), loaded once at start: there is no
build step, a translator edits the JSON, and a unit test checks that every key exists in
every language with the same placeholders. Dates, times and numbers are formatted by Babel
(CLDR data) for the chosen locale, in the hub's time zone (``TZ``, else the host's).
"""

from __future__ import annotations

import json
import os
import string
from datetime import UTC, datetime, tzinfo
from functools import cache

from babel import Locale
from babel.dates import format_datetime
from babel.numbers import format_decimal

LOCALE_DIR = os.path.join(os.path.dirname(__file__), "locale")
#: the languages offered, the default first
LANGUAGES: dict[str, str] = {"zh_CN": "简体中文", "en": "English"}
DEFAULT = "zh_CN"


@cache
def catalogue(lang: str) -> dict[str, str]:
    with open(os.path.join(LOCALE_DIR, f"{lang}.json"), encoding="utf-8") as f:
        return json.load(f)


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def local_zone() -> tzinfo:
    return datetime.now().astimezone().tzinfo or UTC


class Translator:
    """The strings and formats of one language; templates see it as ``t``."""

    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in LANGUAGES else DEFAULT
        self.messages = catalogue(self.lang)
        self.fallback = catalogue(DEFAULT)
        self.locale = Locale.parse(self.lang)
        self.zone = local_zone()
        self.html_lang = self.lang.replace("_", "-")

    def __call__(self, key: str, **values: object) -> str:
        text = self.messages.get(key) or self.fallback.get(key) or key
        return text.format(**values) if values else text

    def has(self, key: str) -> bool:
        return key in self.messages

    def datetime(self, ts: float | None, fmt: str = "short") -> str:
        if ts is None:
            return "—"
        return format_datetime(datetime.fromtimestamp(ts, tz=self.zone), fmt,
                               locale=self.locale)

    def number(self, value: float | None, digits: int = 2) -> str:
        if value is None:
            return "—"
        return format_decimal(round(value, digits), locale=self.locale)

    def client_strings(self) -> dict[str, str]:
        """What console.js needs to say (the ``js.`` keys), sent with every page."""
        return {k[3:]: v for k, v in self.messages.items() if k.startswith("js.")}


def choose(cookie: str | None) -> str:
    """The language of a request: the user's choice (cookie), else zh_CN — the console is
    zh-CN first, whatever the browser prefers."""
    if cookie in LANGUAGES:
        return cookie  # type: ignore[return-value]
    return DEFAULT
