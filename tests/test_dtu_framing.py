"""dtu_framing: the registration rules a listener's DTUs use (first packet, first N bytes, a
regex, an id prefix; ASCII or hex ids), checked options, configured byte strings and the
stripping of a repeated prefix — pure functions, fed the reads a DTU's socket would give."""

from __future__ import annotations

import pytest

from hub.validate import Checker, Invalid, Path, Section
from plugins.transports.tcp_dtu.framing import (
    RegistrationError,
    RegistrationRule,
    check_registration,
    parse_bytes,
    strip_leading,
)

IMEI = b"861234567890123"


def rule(**data) -> RegistrationRule:
    checker = Checker()
    got = check_registration(Section(checker, Path("hub.yaml", ("transports", "dtu",
                                                                "registration")), data))
    assert checker.errors == []
    return got


def errors(**data) -> list[str]:
    checker = Checker()
    check_registration(Section(checker, Path("hub.yaml", ("transports", "dtu",
                                                          "registration")), data))
    return checker.errors


def register(r: RegistrationRule, *reads: bytes) -> tuple[str, bytes, bytes] | None:
    """What the session does: everything received so far, read after read, until the rule
    finds the id."""
    seen = b""
    for i, data in enumerate(reads):
        seen += data
        got = r.extract(seen, i == 0)
        if got is not None:
            return got
    return None


def test_first_packet_is_the_whole_first_read_trimmed():
    r = rule()
    assert register(r, IMEI + b"\r\n") == ("861234567890123", IMEI, b"")
    with pytest.raises(RegistrationError, match="first read"):
        r.extract(IMEI, False)
    with pytest.raises(RegistrationError, match="0 bytes"):
        r.extract(b"\r\n\x00", True)


@pytest.mark.parametrize("reads, rest", [
    ([IMEI + b"\x01\x04"], b"\x01\x04"),
    ([IMEI[:4], IMEI[4:9], IMEI[9:] + b"\x01\x04"], b"\x01\x04"),
    ([bytes([b]) for b in IMEI + b"\x01\x04"], b""),  # the 15th byte completes it
])
def test_first_bytes_waits_for_n_bytes_across_reads_and_keeps_the_rest(reads, rest):
    r = rule(mode="first_bytes", length=15)
    assert register(r, *reads) == ("861234567890123", IMEI, rest)
    assert register(r, IMEI[:14]) is None


def test_regex_takes_its_group_or_the_whole_match():
    grouped = rule(mode="regex", pattern=r"REG:(\d{15});")
    assert register(grouped, b"REG:8612345", b"67890123;\xfe\xfe") == (
        "861234567890123", IMEI, b"\xfe\xfe")
    whole = rule(mode="regex", pattern=r"DTU-\d{4}")
    assert register(whole, b"DTU-0042rest") == ("DTU-0042", b"DTU-0042", b"rest")


def test_regex_without_a_match_waits_then_refuses():
    r = rule(mode="regex", pattern=r"REG:(\d{15});")
    # a pattern anchored at the start cannot match later, but the rule only decides once
    # MAX_ID_BYTES arrived, so a short first read costs nothing
    assert register(r, b"GET / HTTP/1.1\r\n") is None
    with pytest.raises(RegistrationError, match="does not match"):
        r.extract(b"GET / HTTP/1.1\r\n" + b"x" * 64, False)


def test_hex_ids_are_the_upper_case_hex_of_the_raw_bytes():
    raw = bytes.fromhex("8612345678901231")
    r = rule(mode="first_bytes", length=8, encoding="hex")
    assert register(r, raw[:3], raw[3:] + b"\x01") == ("8612345678901231", raw, b"\x01")
    prefix = rule(mode="prefix", length=8, encoding="hex")
    ident, got_raw, _ = register(prefix, raw)
    assert ident == raw.hex().upper() and got_raw == raw  # the prefix to strip is the raw
    assert strip_leading(raw + raw + b"\x01\x04", (got_raw,)) == (b"\x01\x04", 2)


def test_ascii_ids_must_be_printable_ascii():
    r = rule(mode="first_bytes", length=4)
    with pytest.raises(RegistrationError, match="not ASCII"):
        r.extract(b"\x86\x12\x34\x56", True)
    with pytest.raises(RegistrationError, match="control characters"):
        r.extract(b"AB\x07C", True)


def test_bad_registration_options_name_their_key():
    assert errors(mode="prefix") == [
        "hub.yaml: transports.dtu.registration.length: is required with mode prefix"]
    assert "not a valid regex" in errors(mode="regex", pattern="(")[0]
    assert "transports.dtu.registration.encoding" in errors(encoding="base64")[0]


def test_configured_byte_strings():
    assert parse_bytes("hex:FE FE 01") == b"\xfe\xfe\x01"
    assert parse_bytes("www.usr.cn") == b"www.usr.cn"
    for bad in ("hex:ZZ", "", 5):
        with pytest.raises(Invalid):
            parse_bytes(bad)
