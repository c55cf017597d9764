"""The ``gsm_modem`` SMS provider: PDUs against public byte vectors, the AT dialogue as a
sans-IO machine, and the provider end to end against a scripted modem on a pseudo-terminal
(tests/peers/gsm_modem.py) that decodes each PDU with its own TS 23.040 parser."""

from __future__ import annotations

import os
import time

import pytest
from twisted.internet import defer, task
from twisted.internet.selectreactor import SelectReactor
from twisted.python.failure import Failure

from hub.config import Secret
from hub.contracts import SmsMessage, SmsProviderType
from hub.validate import Checker, ConfigError, Path, Section
from plugins.sinks import sms_modem
from plugins.sinks.sms_modem import at, pdu
from plugins.sinks.sms_modem.modem import GsmModemProvider, ModemOptions, ModemUnavailable
from tests.peers.gsm_modem import Script, ScriptedModem, decode_submit, reassemble

# ---- public vectors ------------------------------------------------------------------------

# "SMS and the PDU format" (Lars Pettersson, dreamfabric.com; mirrored at
# http://www.turbocontrol.com/CoolStuff/SMS%20messages%20and%20the%20PDU%20format.htm and
# http://subnets.ru/saved/sms_pdu_format.html): SMS-SUBMIT of "hellohello" to +46708251358,
# SMSC of the SIM, TP-VPF relative, TP-VP AA = 4 days.
HELLOHELLO = "0011000B916407281553F80000AA0AE8329BFD4697D9EC37"

# 中文PDU短信 walkthrough (http://ppmy.cn/news/172198.html, also
# http://inextera.com/forum.php?mod=viewthread&tid=1263): "工作愉快！" in UCS-2 to
# +8613902433649 through SMSC +8613800100500, first octet 11, TP-VP 00 (5 minutes);
# announced with AT+CMGS=25.
GONGZUO = "0891683108100005F011000D91683109423346F90008000A5DE54F5C61095FEBFF01"

# Neoway N11 AT manual, PDU example "whose SMSC address length is 0"
# (https://www.easymanua.ls/neoway/n11-v2/manual?p=131): "hello" in UCS-2 to the national
# number 13421839693 (type 81), first octet 01 (no TP-VP), AT+CMGS=23.
NEOWAY = "0001000B813124819396F300080A00680065006C006C006F"

# Forum Nokia thread "Problem in coding long SMS in 7 bit"
# (http://developer.nokia.com/community/discussion/showthread.php/4486): the user data of a
# 3-part concatenated 7-bit message, reference 3: UDH 05 00 03 03 03 nn, one fill bit, text.
NOKIA_PARTS = [
    ("ABCDEFG", 0x0E, "05000303030182C221B1683C02"),
    ("HIJKLMNOP", 0x10, "0500030303029049E592D9743EA1"),
    ("QRSTUVWXYZ", 0x11, "050003030303A2D229B56ABD62B35A"),
]


def test_hellohello_vector():
    parts = pdu.encode_submit("+46708251358", "hellohello", validity=4 * 86400)
    assert parts == [pdu.Part(HELLOHELLO, 23)]


def test_chinese_ucs2_vector_with_smsc():
    parts = pdu.encode_submit("+8613902433649", "工作愉快！", smsc="+8613800100500",
                              validity=300)
    assert parts == [pdu.Part(GONGZUO, 25)]


def test_neoway_national_address_and_ucs2_user_data():
    raw = bytes.fromhex(NEOWAY)
    assert pdu.encode_smsc(None) == raw[:1]
    assert pdu.encode_destination("13421839693") == raw[3:11]
    assert pdu.user_data(pdu.DCS_UCS2, "hello".encode("utf-16-be")) == (raw[13], raw[14:])
    assert len(raw) - 1 == 23


@pytest.mark.parametrize("text,udl,ud", NOKIA_PARTS)
def test_concatenated_7bit_user_data_with_fill_bit(text, udl, ud):
    septets = bytes(s for u in pdu.gsm7_units(text) for s in u)
    header = bytes.fromhex(ud[:12])
    assert pdu.user_data(pdu.DCS_GSM7, septets, header) == (udl, bytes.fromhex(ud))


def test_peer_parser_reads_the_public_vectors():
    # the scripted modem's parser must agree with the public examples before it judges ours
    s = decode_submit(HELLOHELLO)
    assert (s.number, s.vpf, s.validity, s.dcs, s.text) == ("+46708251358", 2, b"\xaa", 0,
                                                            "hellohello")
    s = decode_submit(GONGZUO)
    assert (s.smsc, s.number, s.dcs, s.text, s.tpdu_length) == (
        "+8613800100500", "+8613902433649", 8, "工作愉快！", 25)
    s = decode_submit(NEOWAY)
    assert (s.number, s.toa, s.vpf, s.text, s.tpdu_length) == ("13421839693", 0x81, 0,
                                                               "hello", 23)


def test_relative_validity_steps():
    # TS 23.040 §9.2.3.12.1
    days = 86400
    assert [pdu.relative_validity(v) for v in (
        300, 301, 12 * 3600, 24 * 3600, 2 * days, 30 * days, 35 * days, 63 * 7 * days)] == [
        0, 1, 143, 167, 168, 196, 197, 255]


# ---- splitting, checked by the peer's parser ------------------------------------------------


def _decoded(parts):
    return [decode_submit(p.pdu_hex) for p in parts]


def test_gsm7_with_extension_characters_fits_one_part():
    text = "Alarm [A1] {45.5°C}"  # ° is not GSM: this goes UCS-2
    assert _decoded(pdu.encode_submit("+8613800138000", text))[0].dcs == 8
    text = "Alarm [A1] {45.5C} €5 ~|^\\"
    (s,) = _decoded(pdu.encode_submit("+8613800138000", text))
    assert (s.dcs, s.text, s.udl) == (0, text, len(text) + 9)  # 9 escapes


def test_long_gsm7_splits_at_153_septets_and_never_inside_an_escape():
    text = "x" * 152 + "€" + "y" * 20
    subs = _decoded(pdu.encode_submit("+8613800138000", text, reference=0x42))
    assert [s.concat for s in subs] == [(0x42, 2, 1), (0x42, 2, 2)]
    assert all(s.udhi and s.first_octet & 0x40 for s in subs)
    assert subs[0].text == "x" * 152 and subs[0].udl == 7 + 152
    assert reassemble(subs) == [("+8613800138000", text)]
    assert len(pdu.encode_submit("+1", "z" * 160)) == 1
    assert len(pdu.encode_submit("+1", "z" * 161)) == 2


def test_long_chinese_splits_at_67_units_and_never_inside_a_surrogate_pair():
    text = "配电箱温度超限" * 11  # 77 characters
    subs = _decoded(pdu.encode_submit("+8613800138000", text))
    assert [len(s.text) for s in subs] == [67, 10]
    assert all(s.dcs == 8 and s.udl == 6 + 2 * len(s.text) for s in subs)
    assert reassemble(subs) == [("+8613800138000", text)]
    text = "火" * 66 + "🔥" + "灾" * 10
    subs = _decoded(pdu.encode_submit("+8613800138000", text))
    assert subs[0].text == "火" * 66 and subs[1].text.startswith("🔥")
    assert reassemble(subs)[0][1] == text


def test_bad_numbers_and_too_many_parts():
    for bad in ("", "+", "+86 138", "13800138000x", "+" + "1" * 21):
        with pytest.raises(pdu.PduError):
            pdu.encode_submit(bad, "hi")
    with pytest.raises(pdu.PduError, match="needs 3 parts"):
        pdu.encode_submit("+1", "火" * 140, max_parts=2)


# ---- the AT dialogue, sans-IO ----------------------------------------------------------------


def _events(s: at.AtSession) -> list:
    out = []
    while (e := s.next_event()) is not None:
        out.append(e)
    return out


def test_init_with_echo_urcs_and_pin():
    s = at.AtSession(pin="1234")
    s.initialise()
    assert s.data_to_send() == b"\x1bAT\r"
    s.receive_data(b"AT\r\r\nOK\r\n")
    assert s.data_to_send() == b"ATE0\r"
    s.receive_data(b"ATE0\r\r\n")
    s.receive_data(b"OK\r\n")
    assert s.data_to_send() == b"AT+CMEE=1\r"
    s.receive_data(b"\r\nRING\r\n\r\n^RSSI: 17\r\n\r\nOK\r\n")
    assert s.data_to_send() == b"AT+CPIN?\r"
    s.receive_data(b'\r\n+CPIN: SIM PIN\r\n\r\n+CMTI: "SM",3\r\n\r\nOK\r\n')
    assert s.data_to_send() == b'AT+CPIN="1234"\r'
    s.receive_data(b"\r\nOK\r\n")
    assert s.data_to_send() == b"AT+CMGF=0\r"
    assert _events(s) == []
    s.receive_data(b"\r\nOK\r\n")
    assert _events(s) == [at.Ready()] and not s.busy and s.timeout is None


def test_pin_asked_but_not_configured_and_puk():
    for answer, pin in ((b"+CPIN: SIM PIN", None), (b"+CPIN: SIM PUK", "1234")):
        s = at.AtSession(pin=pin)
        s.initialise()
        for _ in range(3):
            s.receive_data(b"\r\nOK\r\n")
        s.receive_data(b"\r\n" + answer + b"\r\n\r\nOK\r\n")
        (e,) = _events(s)
        assert isinstance(e, at.Failed) and e.error.kind == "pin"


def test_submit_two_parts():
    parts = pdu.encode_submit("+8613800138000", "火" * 80)
    s = at.AtSession()
    s.submit(parts)
    assert s.data_to_send() == b"AT+CMGS=%d\r" % parts[0].tpdu_length
    s.receive_data(b"\r\n> ")  # the prompt has no line end
    assert s.data_to_send() == parts[0].pdu_hex.encode() + b"\x1a"
    s.receive_data(b"\r\n+CMGS: 17\r\n\r\n+CMTI: \"SM\",4\r\n\r\nOK\r\n")
    assert s.data_to_send() == b"AT+CMGS=%d\r" % parts[1].tpdu_length
    s.receive_data(b"\r\n>")
    s.receive_data(b" ")
    assert s.data_to_send() == parts[1].pdu_hex.encode() + b"\x1a"
    s.receive_data(b"\r\n+CMGS: 18\r\n\r\nOK\r\n")
    assert _events(s) == [at.Submitted((17, 18))]


@pytest.mark.parametrize("line,permanent", [
    (b"+CMS ERROR: 38", False),   # network out of order (TS 24.011 E.2)
    (b"+CMS ERROR: 42", False),   # congestion
    (b"+CMS ERROR: 331", False),  # no network service (TS 27.005 §3.2.5)
    (b"+CMS ERROR: 500", False),  # unknown error
    (b"+CMS ERROR: 21", True),    # short message transfer rejected
    (b"+CMS ERROR: 28", True),    # unidentified subscriber
    (b"+CMS ERROR: 1", True),     # unassigned number
    (b"+CMS ERROR: 304", True),   # invalid PDU mode parameter
    (b"+CMS ERROR: 145", True),   # 0x91, a TP-DCS error (TS 23.040 §9.2.3.22)
    (b"+CME ERROR: 10", False),   # SIM not inserted (TS 27.007 §9.2.1)
    (b"ERROR", False),
])
def test_errors_are_classified(line, permanent):
    s = at.AtSession()
    s.submit(pdu.encode_submit("+1", "a" * 200))
    s.receive_data(b"\r\n> ")
    s.receive_data(b"\r\n+CMGS: 3\r\n\r\nOK\r\n\r\n> ")
    s.receive_data(b"\r\n" + line + b"\r\n")
    (e,) = _events(s)
    assert isinstance(e, at.Failed) and e.error.permanent is permanent and e.sent == (3,)
    assert str(e.error).startswith(line.decode())


def test_timeouts_name_what_was_awaited():
    s = at.AtSession(command_timeout=2, send_timeout=30)
    s.submit(pdu.encode_submit("+1", "hi"))
    assert s.timeout == 2
    timer = s.timer
    s.receive_data(b"\r\nRING\r\n")
    assert s.timer == timer  # unsolicited codes do not extend the wait
    s.receive_data(b"\r\n> ")
    assert s.timeout == 30 and s.timer != timer
    s.timed_out()
    (e,) = _events(s)
    assert e.error.kind == "timeout" and "+CMGS after the PDU" in str(e.error)


# ---- the provider against the scripted modem on a pty ---------------------------------------


@pytest.fixture
def reactor():
    r = SelectReactor()  # a private reactor per test: nothing leaks between tests
    r.modems = []
    yield r
    for _ in range(5):  # let closing ports finish (loseConnection completes in doWrite)
        r.iterate(0)
    for modem in r.modems:
        modem.vanish()
    for call in r.getDelayedCalls():
        call.cancel()
    r.removeAll()
    r.waker.connectionLost(None)


def scripted(reactor, script: Script | None = None, link: str | None = None) -> ScriptedModem:
    modem = ScriptedModem(reactor, script, link)
    reactor.modems.append(modem)
    return modem


def run(reactor, d: defer.Deferred, timeout: float = 5.0):
    """Iterate ``reactor`` until ``d`` fires (at most ``timeout`` s); its result or raise."""
    box: list = []
    d.addBoth(box.append)
    deadline = time.monotonic() + timeout
    while not box:
        assert time.monotonic() < deadline, "timed out waiting for the provider"
        reactor.iterate(0.01)
    if isinstance(box[0], Failure):
        box[0].raiseException()
    return box[0]


def wait_for(reactor, condition, what: str, timeout: float = 5.0) -> None:
    """Iterate ``reactor`` until ``condition()`` holds (at most ``timeout`` s): the pty is
    real, so its bytes take real time, but no test sleeps a fixed time for them."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        reactor.iterate(0.01)


def fired(d: defer.Deferred) -> list:
    box: list = []
    d.addBoth(box.append)
    return box


def message(text: str, *phones: str) -> SmsMessage:
    return SmsMessage(phones=phones, text=text, template="alarm", params={}, key="k1")


def provider(reactor, port: str, clock=None, **kw) -> GsmModemProvider:
    """The provider on ``reactor`` for the pty; its timeouts, backoff and pacing on
    ``clock`` when given (a task.Clock the test advances: no waiting in real time)."""
    kw.setdefault("inter_message_delay", 0.0)
    kw.setdefault("reopen_initial", 0.1)
    return GsmModemProvider(ModemOptions(port=port, **kw), reactor, clock=clock)


def test_long_chinese_to_two_phones(reactor, tmp_path):
    modem = scripted(reactor, Script(urcs=("RING", '+CMTI: "SM",3', "^RSSI: 17")))
    p = provider(reactor, modem.path, inter_message_delay=0.05, validity=86400)
    text = ("【电气火灾监控】3号楼配电箱A1剩余电流报警："
            "I0=320mA，超过阈值300mA。请立即到现场检查。") * 2
    assert len(text) > 70
    try:
        results = run(reactor, p.send(message(text, "+8613800138000", "+8613900139000")))
    finally:
        p.close()
    assert modem.problems == []
    assert [r.ok for r in results] == [True, True]
    assert [r.phone for r in results] == ["+8613800138000", "+8613900139000"]
    assert len(modem.submits) >= 4 and all(s.dcs == 0x08 and s.udhi for s in modem.submits)
    assert all(s.vpf == 2 and s.validity == bytes([167]) for s in modem.submits)
    assert reassemble(modem.submits) == [("+8613800138000", text), ("+8613900139000", text)]
    n = len(modem.submits) // 2
    assert results[0].message_id == ",".join(str(i) for i in range(1, n + 1))
    assert modem.commands[:5] == ["AT", "ATE0", "AT+CMEE=1", "AT+CPIN?", "AT+CMGF=0"]


def test_gsm7_text_with_pin_through_a_symlinked_port(reactor, tmp_path):
    link = str(tmp_path / "ttyGSM0")
    modem = scripted(reactor, Script(pin="2468"), link=link)
    p = provider(reactor, link, pin=Secret("2468", "env:SIM_PIN"))
    try:
        (r,) = run(reactor, p.send(message("Fire alarm {B2}: 71 C, 1/3", "+8613800138000")))
        (r2,) = run(reactor, p.send(message("cleared", "+8613800138000")))
    finally:
        p.close()
    assert r.ok and r.message_id == "1" and r2.ok and r2.message_id == "2"
    assert 'AT+CPIN="2468"' in modem.commands and modem.commands.count("AT+CMGF=0") == 1
    assert [s.text for s in modem.submits] == ["Fire alarm {B2}: 71 C, 1/3", "cleared"]
    assert all(s.dcs == 0 and s.first_octet == 0x01 for s in modem.submits)


def test_a_refused_pin_is_sent_only_once(reactor):
    modem = scripted(reactor, Script(pin="2468"))
    clock = task.Clock()
    p = provider(reactor, modem.path, clock, pin=Secret("1111", "env:SIM_PIN"),
                 reopen_initial=10)
    try:
        with pytest.raises(ModemUnavailable, match="refused the PIN"):
            run(reactor, p.send(message("x", "+8613800138000")))
        clock.advance(10)  # the backoff is over: the port is opened again
        with pytest.raises(ModemUnavailable, match="no pin is set"):
            run(reactor, p.send(message("x", "+8613800138000")))
    finally:
        p.close()
    assert [c for c in modem.commands if c.startswith("AT+CPIN=")] == ['AT+CPIN="1111"']


def test_cms_errors_permanent_and_transient(reactor):
    modem = scripted(reactor, Script(cms_errors={0: 28, 1: 38}))
    p = provider(reactor, modem.path)
    try:
        results = run(reactor, p.send(message("test", "+8613800000001", "+8613800000002",
                                              "+8613800000003", "not-a-number")))
    finally:
        p.close()
    r1, r2, r3, r4 = results
    assert not r1.ok and r1.permanent and "+CMS ERROR: 28" in r1.error
    assert not r2.ok and not r2.permanent and "network out of order" in r2.error
    assert r3.ok and r3.message_id == "1"
    assert not r4.ok and r4.permanent and "not a phone number" in r4.error


def test_silent_modem_errbacks_then_recovers(reactor):
    modem = scripted(reactor, Script(silent_from=0))
    clock = task.Clock()
    p = provider(reactor, modem.path, clock, command_timeout=5, send_timeout=30,
                 reopen_initial=10)
    try:
        result = fired(p.send(message("hello", "+8613800138000")))
        wait_for(reactor, lambda: modem.swallowed == 1, "the PDU the modem swallows")
        clock.advance(29.9)
        assert result == []  # send_timeout (30 s) for +CMGS, not command_timeout (5 s)
        clock.advance(0.1)
        [failure] = result
        assert failure.check(ModemUnavailable) and "did not answer" in str(failure.value)
        # within the backoff the port stays closed and send fails at once
        with pytest.raises(ModemUnavailable, match="reopening"):
            run(reactor, p.send(message("hello", "+8613800138000")))
        modem.script.silent_from = None
        clock.advance(10)
        (r,) = run(reactor, p.send(message("hello", "+8613800138000")))
    finally:
        p.close()
    assert r.ok and modem.commands.count("AT+CMGF=0") == 2  # initialised again


def test_port_disappears_and_comes_back(reactor, tmp_path):
    link = str(tmp_path / "ttyUSB-modem")
    modem = scripted(reactor, link=link)
    clock = task.Clock()
    p = provider(reactor, link, clock, reopen_initial=10)
    try:
        (r,) = run(reactor, p.send(message("one", "+8613800138000")))
        assert r.ok
        modem.vanish()
        # the provider notices the hangup by itself
        wait_for(reactor, lambda: not p._ready, "the provider to see the port go")
        with pytest.raises(ModemUnavailable, match="reopening"):
            run(reactor, p.send(message("two", "+8613800138000")))
        clock.advance(10)
        with pytest.raises(ModemUnavailable, match="cannot open"):
            run(reactor, p.send(message("two", "+8613800138000")))
        again = scripted(reactor, link=link)
        with pytest.raises(ModemUnavailable, match="reopening"):  # the backoff doubled
            run(reactor, p.send(message("three", "+8613800138000")))
        clock.advance(20)
        (r,) = run(reactor, p.send(message("three", "+8613800138000")))
    finally:
        p.close()
    assert r.ok and [s.text for s in again.submits] == ["three"]
    assert not os.path.exists(link) or os.path.islink(link)


def test_the_sink_cuts_texts_to_the_modems_max_parts(reactor, make_hub):
    """The sink allows 10 parts, the modem 2: the sink reads the modem's ``max_parts`` and
    cuts the alarm to 2 parts (with …), which the modem sends, instead of handing over a
    text the modem can only refuse for good."""
    import random

    from hub.model import DeliveryStatus, Event, EventKind, EventState, Level
    from plugins.sinks.sms.sink import SmsSink
    from plugins.sinks.sms.textparts import parts

    modem = scripted(reactor)
    long = ("【电气火灾报警】{where}{what}：{reading}。"
            + "请立即派人到现场检查配电箱并切断电源。" * 10)
    hub = make_hub({"sinks": {"sms": {
        "type": "sms", "max_parts": 10, "templates": {"alarm": long},
        "provider": {"type": "gsm_modem", "port": modem.path, "max_parts": 2},
        "recipients": {"duty": ["13800138000"]}, "routes": [{"notify": ["duty"]}]}},
        "devices": [{"id": "efd-1", "model": "simulated", "name": "1号配电箱"}]})
    options = hub.config.sinks["sms"].options
    modem_provider = GsmModemProvider(options.provider, reactor, clock=hub.clock)
    sink = SmsSink(hub, "sms", options, provider=modem_provider, rng=random.Random(1))
    sink.startService()
    try:
        hub.journal.append([Event(device="efd-1", kind=EventKind.ALARM, code="temperature",
                                  state=EventState.RAISED, ts=hub.clock.seconds(),
                                  level=Level.ALARM, channel="T1", id="a1", value=92.5,
                                  set_point=80.0)])
        hub.journal.flush()
        hub.clock.advance(0.2)

        def delivered():
            hub.journal.flush()
            return hub.journal.read(0, 100, {"delivery"})

        wait_for(reactor, delivered, "the delivery record")
    finally:
        sink.stopService()
        modem_provider.close()
    [(_, d)] = delivered()
    assert (d.status, d.detail) == (DeliveryStatus.SENT, "")
    assert len(modem.submits) == 2 and modem.problems == []
    [(phone, text)] = reassemble(modem.submits)
    assert phone == "+8613800138000" and text.endswith("…") and parts(text) == 2
    assert text.startswith("【电气火灾报警】1号配电箱T1温度报警：温度92.5°C")
    assert parts(long) > 2  # without the cut the modem would have refused it


@pytest.mark.parametrize("text", [
    "x" * 152 + "€" + "y" * 152,  # an escape pair across the 153-septet boundary
    "中" * 66 + "😀" + "文" * 66,  # a surrogate pair across the 67-unit boundary
    "a" * 160, "a" * 161, "中" * 70, "中" * 71, "中" * 134, "中" * 135,
])
def test_part_count_of_the_sink_agrees_with_the_pdu_encoder(text):
    from plugins.sinks.sms import textparts

    assert textparts.parts(text) == len(pdu.split_text(text)[1])
    for n in (1, 2, 3):
        cut = textparts.fit(text, n)
        assert len(pdu.split_text(cut)[1]) <= n


# ---- options ---------------------------------------------------------------------------------


def check(data: dict):
    checker = Checker()
    section = Section(checker, Path("hub.yaml", ("sinks", "sms", "provider")), data)
    opts = sms_modem.check_options(section)
    checker.raise_if_any()
    return opts


def test_options_defaults_and_registration():
    (ptype,) = sms_modem.hub_register_sms_providers()
    assert isinstance(ptype, SmsProviderType) and ptype.name == "gsm_modem"
    o = check({"type": "gsm_modem", "port": "/dev/ttyUSB2"})
    assert (o.port, o.baudrate, o.smsc, o.pin, o.validity, o.max_parts) == (
        "/dev/ttyUSB2", 115200, None, None, None, 6)
    o = check({"port": "/dev/ttyUSB2", "pin": Secret("1234", "env:PIN"), "smsc": "+8613800100500"})
    assert "1234" not in repr(o)
    assert ptype.factory(o, task.Clock()).name == "gsm_modem"


def test_option_errors_name_key_paths():
    with pytest.raises(ConfigError) as e:
        check({"baudrate": 12345, "pin": "1234", "validity": 10, "max_parts": 0,
               "smsc": "x", "reopen_initial": 5, "reopen_max": 1, "bautrate": 9600})
    text = str(e.value)
    p = "hub.yaml: sinks.sms.provider."
    for needle in (p + "port: is required", p + "baudrate: 12345 is not one of",
                   p + "pin: write the PIN as {env: NAME}", p + "validity: 10 is outside",
                   p + "max_parts: 0 is outside", p + "smsc: 'x' is not a phone number",
                   p + "reopen_max: 1 s is below", p + "bautrate: is not a known key"):
        assert needle in text, (needle, text)
    with pytest.raises(ConfigError, match="4 to 8 digits"):
        check({"port": "/dev/ttyS0", "pin": Secret("12", "env:PIN")})


def test_readme_example_is_valid():
    import re
    from pathlib import Path as FsPath

    import yaml

    readme = (FsPath(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n### GSM modem (短信猫)\n", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```yaml\n(.*?)```", section, flags=re.S)
    provider = dict(yaml.safe_load(block)["sinks"]["sms"]["provider"])
    provider["pin"] = Secret("1234", "env:SIM_PIN")  # what {env: SIM_PIN} becomes
    o = check(provider)
    assert o.port.startswith("/dev/serial/by-id/") and o.validity == 86400


def test_send_deadline_covers_the_messages_queued_ahead():
    """The sink waits at least ``send_deadline`` for a send: the modem sends one text at a
    time, so the deadline of a message grows with the queue ahead of it."""
    from twisted.internet.task import Clock

    from plugins.sinks.sms_modem.modem import GsmModemProvider, ModemOptions

    opts = ModemOptions(port="/dev/null")
    p = GsmModemProvider(opts, Clock(), open_port=lambda proto: None)
    one = p.send_deadline
    assert one >= opts.max_parts * opts.send_timeout
    p._queue.extend([(None, None)] * 3)  # three texts waiting ahead
    assert p.send_deadline == 4 * one
