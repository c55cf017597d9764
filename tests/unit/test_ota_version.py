"""Firmware versions compare exactly, never as text or substrings."""

import pytest

from hub.ota.version import VersionError, compare, parse, same


@pytest.mark.parametrize("older,newer", [
    ("1.1.1", "1.1.10"),
    ("1.1.9", "1.1.10"),
    ("1.9.0", "1.10.0"),
    ("1.1.10", "1.1.11"),
    ("1.0.0-rc.1", "1.0.0"),
    ("1.0.0-alpha", "1.0.0-alpha.1"),
    ("1.0.0-alpha.1", "1.0.0-alpha.beta"),
    ("1.0.0-beta.2", "1.0.0-beta.11"),
    ("1.0.0-rc.1", "1.0.0-rc.1a"),
    ("V2.03.0017", "V2.03.0100"),
    ("2.9", "2.10"),
    ("1.0.0.9", "1.0.0.12"),
    ("v1.2", "1.2.0.1"),
])
def test_order(older, newer):
    assert compare(older, newer) == -1
    assert compare(newer, older) == 1
    assert parse(older) < parse(newer)


@pytest.mark.parametrize("a,b", [
    ("1.1.1", "1.1.1"), ("2.3", "2.3.0"), ("V2.03.0017", "2.3.17"), ("1.0.0+build.7",
                                                                   "1.0.0+other"),
])
def test_equal(a, b):
    assert compare(a, b) == 0
    assert same(a, b)


def test_never_substrings():
    # the bug the issue names: 1.1.1 is in "1.1.10" as text, and must not match it
    assert not same("1.1.10", "1.1.1")
    assert not same("1.1.1", "1.1.10")
    assert not same("11.1.1", "1.1.1")
    assert not same("1.1.1", "1.1.1-rc.1")
    assert not same(None, "1.1.1")
    assert not same("junk", "1.1.1")


@pytest.mark.parametrize("text", ["", "abc", "1..2", "1.2-", "1.2.3-", "01.2.3-rc",
                                  "1.2.3.4.5.6.7.8.9", "x" * 100])
def test_refused(text):
    with pytest.raises(VersionError):
        parse(text)


def test_scheme_is_enforced():
    assert parse("1.4.2", "semver").scheme == "semver"
    with pytest.raises(VersionError, match="semantic"):
        parse("V2.03", "semver")
    assert parse("1.4.2-rc.1").pre == ("rc", 1)
    assert parse("V2.03", "dotted").release == (2, 3)
    with pytest.raises(VersionError, match="unknown version scheme"):
        parse("1.0.0", "calendar")
