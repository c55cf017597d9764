"""Configuration checking that names the file, the key path and what was expected.

Plugins validate their own sections with these helpers, so every error reads the same way::

    conf/hub.yaml: alarms.defaults.temperature.alarm: 200 is outside 45..140 °C
    (T/CFPA 023-2023 table 1)

(one line in reality).

A check never stops at the first problem when it can go on: :class:`Checker` collects every
error of a file and :class:`ConfigError` carries them all.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

_MISSING = object()


class ConfigError(Exception):
    """One or more configuration errors; ``str()`` gives one line per error."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class Invalid(Exception):
    """Raised by a check at one key; :class:`Checker` turns it into a line of ConfigError."""


@dataclass(frozen=True)
class Path:
    """A key path inside one file, e.g. ``devices[3].alarms.temperature``."""

    file: str
    keys: tuple[str | int, ...] = ()

    def __truediv__(self, key: str | int) -> Path:
        return Path(self.file, self.keys + (key,))

    def __str__(self) -> str:
        out = ""
        for k in self.keys:
            if isinstance(k, int):
                out += f"[{k}]"
            else:
                out += ("." if out else "") + str(k)
        return out or "(top level)"

    def message(self, text: str) -> str:
        return f"{self.file}: {self}: {text}"


class Checker:
    """Collects errors while a whole file is checked.

    ``check(path, fn, *args)`` runs ``fn(*args)``; if it raises :class:`Invalid` the message
    is recorded against ``path`` and ``default`` is returned, so checking goes on.
    """

    def __init__(self, plugins: Any = None) -> None:
        self.errors: list[str] = []
        #: the :class:`hub.pluginmanager.HubPlugins` being configured, for checks that look
        #: up types of their own (the ``sms`` sink's providers); ``None`` outside a config
        self.plugins = plugins

    def error(self, path: Path, text: str) -> None:
        self.errors.append(path.message(text))

    def check(self, path: Path, fn: Callable[..., T], *args: Any, default: Any = None) -> T:
        try:
            return fn(*args)
        except Invalid as e:
            self.error(path, str(e))
        except ConfigError as e:
            self.errors.extend(e.errors)
        except Exception as e:  # noqa: BLE001
            # a check that did not expect this type (a list where it looked a name up):
            # still an error of this key, not a traceback that hides every other error
            self.error(path, f"could not be checked: {type(e).__name__}: {e} (probably a "
                       f"value of the wrong type here; the check should have said which)")
        return default

    def raise_if_any(self) -> None:
        if self.errors:
            raise ConfigError(self.errors)


def describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"{value!r} (a boolean)"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value) if isinstance(value, str) else str(value)


class Section:
    """A mapping in the config being read, remembering which keys were used.

    Reading through a Section lets :meth:`finish` report keys nobody asked for — usually a
    typo (``hearbeat``), which would otherwise be silently ignored.
    """

    def __init__(self, checker: Checker, path: Path, data: Any) -> None:
        self.checker = checker
        self.path = path
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            checker.error(path, f"expected a mapping, got {describe(data)}")
            data = {}
        self.data: Mapping[str, Any] = data
        self._used: set[str] = set()

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        self._used.add(key)
        if key not in self.data:
            if default is _MISSING:
                self.checker.error(self.path / key, "is required")
                return None
            return default
        return self.data[key]

    def get(self, key: str, check: Callable[[Any], T], default: Any = _MISSING) -> T:
        """The value at ``key`` passed through ``check`` (which raises :class:`Invalid`)."""
        self._used.add(key)
        if key not in self.data:
            if default is _MISSING:
                self.checker.error(self.path / key, "is required")
                return None  # type: ignore[return-value]
            return default
        return self.checker.check(self.path / key, check, self.data[key], default=None)

    def section(self, key: str) -> Section:
        self._used.add(key)
        return Section(self.checker, self.path / key, self.data.get(key))

    def items(self) -> Iterator[tuple[str, Any]]:
        for k, v in self.data.items():
            self._used.add(k)
            yield str(k), v

    def finish(self, allowed_extra: tuple[str, ...] = ()) -> None:
        for k in self.data:
            if k not in self._used and k not in allowed_extra:
                self.checker.error(self.path / str(k), "is not a known key here")


# ---- value checks: each returns the value (converted) or raises Invalid -------------------


def number(lo: float | None = None, hi: float | None = None, unit: str = "",
           ref: str = "") -> Callable[[Any], float]:
    """A number, optionally within ``lo..hi`` (inclusive)."""

    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise Invalid(f"expected a number, got {describe(v)}")
        if not math.isfinite(v):
            # YAML's .nan/.inf pass every comparison below (nan < lo is False) and would
            # silently switch an alarm or a timeout off.
            raise Invalid(f"expected a finite number, got {v}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = f"{_fmt(lo)}..{_fmt(hi)}" if lo is not None and hi is not None else (
                f">= {_fmt(lo)}" if lo is not None else f"<= {_fmt(hi)}")
            text = f"{_fmt(v)} is outside {rng}" + (f" {unit}" if unit else "")
            raise Invalid(text + (f" ({ref})" if ref else ""))
        return float(v)

    return check


def integer(lo: int | None = None, hi: int | None = None) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise Invalid(f"expected an integer, got {describe(v)}")
        number(lo, hi)(v)
        return v

    return check


def boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise Invalid(f"expected true or false, got {describe(v)}")
    return v


def string(pattern: str | None = None, what: str = "") -> Callable[[Any], str]:
    rx = re.compile(pattern) if pattern else None

    def check(v: Any) -> str:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = str(v)  # ids such as IMEIs are often written unquoted
        if not isinstance(v, str):
            raise Invalid(f"expected a string, got {describe(v)}")
        if rx and not rx.fullmatch(v):
            raise Invalid(f"{v!r} is not {what or 'of the form ' + pattern}")
        return v

    return check


def choice(*options: str) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if v not in options:
            raise Invalid(f"{describe(v)} is not one of {', '.join(options)}")
        return v

    return check


def regex(v: Any) -> re.Pattern[str]:
    if not isinstance(v, str):
        raise Invalid(f"expected a regular expression string, got {describe(v)}")
    try:
        return re.compile(v)
    except re.error as e:
        raise Invalid(f"{v!r} is not a valid regular expression: {e}") from None


def _fmt(v: float | None) -> str:
    if v is None:
        return ""
    return str(int(v)) if float(v).is_integer() else str(v)
