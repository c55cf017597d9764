"""Firmware versions compared exactly: semver or a vendor's dotted numbers, never as text.

A version compared as a string (or found as a substring) takes 1.1.1 for 1.1.10, and
"1.10" < "1.9". Here a version parses into numeric fields and compares field by field:

* **semver** (``1.4.2``, ``1.4.2-rc.1``, ``1.4.2+build.7``): major.minor.patch, then a
  pre-release sorts below its release, identifiers compared as SemVer 2.0.0 §11 says
  (numeric ones numerically, below alphanumeric ones); build metadata is ignored for order
  but kept for equality of the text.
* **dotted numeric** (``V2.03.0017``, ``2.3``, ``1.0.0.12``): any number of numeric fields,
  an optional leading ``v``/``V``; missing trailing fields count as 0, so ``2.3`` equals
  ``2.3.0`` in order. Leading zeros do not matter (``2.03`` is ``2.3``).

``scheme`` picks one; ``"auto"`` tries semver, then dotted numeric. Anything else (``abc``,
``1..2``, ``1.2-``) is refused with :class:`VersionError` rather than guessed at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering
from typing import Literal

__all__ = ["SCHEMES", "Version", "VersionError", "compare", "parse"]

Scheme = Literal["auto", "semver", "dotted"]
SCHEMES: tuple[str, ...] = ("auto", "semver", "dotted")

_SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)"
    r"(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?")
_DOTTED = re.compile(r"[vV]?(\d{1,9})(?:\.(\d{1,9})){0,7}")
MAX_LENGTH = 64


class VersionError(ValueError):
    """Text that is no version of the scheme asked for."""


@total_ordering
@dataclass(frozen=True)
class Version:
    """A parsed version: ``release`` the numeric fields, ``pre`` the pre-release
    identifiers (semver only; empty for a release)."""

    text: str
    scheme: str
    release: tuple[int, ...]
    pre: tuple[int | str, ...] = ()

    def _key(self) -> tuple:
        release = self.release
        while len(release) > 1 and release[-1] == 0:
            release = release[:-1]  # 2.3 == 2.3.0 in order
        # a release sorts above its pre-releases; numeric identifiers below alphanumeric
        pre = tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in self.pre)
        return (release, 1 if not self.pre else 0, pre)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() == other._key()

    def __lt__(self, other: Version) -> bool:
        return self._key() < other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        return self.text


def parse(text: str, scheme: Scheme | str = "auto") -> Version:
    """``text`` as a :class:`Version` of ``scheme``; :class:`VersionError` otherwise."""
    if not isinstance(text, str):
        raise VersionError(f"a version is text, not {type(text).__name__}")
    t = text.strip()
    if not t or len(t) > MAX_LENGTH:
        raise VersionError(f"{text!r} is no version (1-{MAX_LENGTH} characters)")
    if scheme not in SCHEMES:
        raise VersionError(f"unknown version scheme {scheme!r} (one of {', '.join(SCHEMES)})")
    if scheme in ("auto", "semver"):
        m = _SEMVER.fullmatch(t)
        if m is not None:
            pre = tuple(int(p) if p.isdigit() else p for p in m.group(4).split(".")) \
                if m.group(4) else ()
            return Version(t, "semver", (int(m.group(1)), int(m.group(2)), int(m.group(3))),
                           pre)
        if scheme == "semver":
            raise VersionError(f"{text!r} is not a semantic version like 1.4.2 or 1.4.2-rc.1")
    if _DOTTED.fullmatch(t):
        return Version(t, "dotted", tuple(int(p) for p in t.lstrip("vV").split(".")))
    raise VersionError(f"{text!r} is not a version like 1.4.2 (semver) or V2.03.0017 "
                       "(dotted numbers)")


def compare(a: str, b: str, scheme: Scheme | str = "auto") -> int:
    """-1, 0 or 1 as ``a`` is older than, the same as or newer than ``b``."""
    va, vb = parse(a, scheme), parse(b, scheme)
    return (va > vb) - (va < vb)


def same(a: str | None, b: str, scheme: Scheme | str = "auto") -> bool:
    """Whether the version a device reports (``a``, perhaps ``None`` or junk) is ``b``."""
    if a is None:
        return False
    try:
        return compare(a, b, scheme) == 0
    except VersionError:
        return False
