"""Alibaba Cloud on signature V3: ``aliyun`` SMS (V3 by default, V2 behind
``signature: v2``) and ``aliyun_voice`` (Dyvmsapi ``SingleCallByTts``) over loopback
sockets, against stand-ins that recompute the V3 signature independently and check the
published wire format (tests/support/peers/sms_providers.py)."""

from __future__ import annotations

import json

from hub.config import Secret
from hub.contracts import SmsMessage
from hub.validate import Checker, Path, Section
from plugins.sinks.sms_cloud import aliyun, aliyun_voice
from tests.support.fresh_reactor import run
from tests.support.peers.sms_providers import AliyunPeer, AliyunVoicePeer, aliyun_ok

KEY_ID, KEY_SECRET = "LTAI5tTestKeyId", "aliyun-secret-value-123"


def checked(check, data: dict):
    checker = Checker()
    opts = check(Section(checker, Path("hub.yaml", ("provider",)), data))
    checker.raise_if_any()
    return opts


def sms_options(url: str, **kw) -> aliyun.AliyunOptions:
    return checked(aliyun.check_options, {
        "type": "aliyun", "access_key_id": KEY_ID,
        "access_key_secret": Secret(kw.pop("secret", KEY_SECRET), "env:ALIYUN_SECRET"),
        "sign_name": "消防监控", "endpoint": url, "timeout": 5,
        "templates": {"alarm": "SMS_123456"}, **kw})


def voice_options(url: str, **kw) -> aliyun_voice.AliyunVoiceOptions:
    return checked(aliyun_voice.check_options, {
        "type": "aliyun_voice", "access_key_id": KEY_ID,
        "access_key_secret": Secret(kw.pop("secret", KEY_SECRET), "env:ALIYUN_SECRET"),
        "endpoint": url, "timeout": 5, "called_show_number": "057112345678",
        "templates": {"alarm": {"code": "TTS_10001", "params": ["device", "value"]}}, **kw})


def message(*phones: str, key: str = "alarm-42-0") -> SmsMessage:
    return SmsMessage(tuple(phones), "efd-1 92.5", "alarm",
                      {"device": "efd-1", "value": "92.5", "quantity": "temperature"}, key)


def test_sms_is_signed_v3_by_default_and_v2_on_request():
    with AliyunPeer(KEY_ID, KEY_SECRET) as peer:
        opts = sms_options(peer.url)
        assert opts.signature == "v3"
        results = run(lambda r: aliyun.AliyunProvider(opts, r).send(message("+8613800138000")))
        assert results[0].ok and peer.problems == []
        seen = peer.requests[0]
        assert peer.signatures == ["v3"] and seen.method == "POST" and seen.body == b""
        assert seen.headers["x-acs-action"] == "SendSms"
        assert seen.headers["x-acs-version"] == "2017-05-25"
        assert seen.params["PhoneNumbers"] == "13800138000"
        assert seen.params["SignName"] == "消防监控"
        assert json.loads(seen.params["TemplateParam"])["device"] == "efd-1"
        assert "Signature" not in seen.params and "AccessKeyId" not in seen.params
        v2 = sms_options(peer.url, signature="v2")
        results = run(lambda r: aliyun.AliyunProvider(v2, r).send(message("+8613800138000")))
        assert results[0].ok and peer.problems == []
        assert peer.signatures == ["v3", "v2"]
        assert peer.requests[1].params["SignatureMethod"] == "HMAC-SHA1"


def test_sms_v3_with_a_wrong_secret_is_refused_by_the_peer():
    with AliyunPeer(KEY_ID, KEY_SECRET) as peer:
        opts = sms_options(peer.url, secret="not-the-secret")
        try:
            run(lambda r: aliyun.AliyunProvider(opts, r).send(message("+8613800138000")))
        except Exception as e:  # every phone failed transiently: the attempt fails
            assert "SignatureDoesNotMatch" in str(e)
        else:
            raise AssertionError("a wrong secret was accepted")
        assert any("Authorization" in p for p in peer.problems)


def test_sms_signature_option_is_checked():
    checker = Checker()
    aliyun.check_options(Section(checker, Path("hub.yaml", ("provider",)), {
        "type": "aliyun", "access_key_id": KEY_ID,
        "access_key_secret": Secret(KEY_SECRET, "env:X"), "sign_name": "s",
        "templates": {"alarm": "SMS_1"}, "signature": "v1"}))
    assert checker.errors and "signature" in checker.errors[0]


def test_voice_call_matches_the_published_request():
    with AliyunVoicePeer(KEY_ID, KEY_SECRET) as peer:
        opts = voice_options(peer.url)
        results = run(lambda r: aliyun_voice.AliyunVoiceProvider(opts, r).send(
            message("+8613800138000", key="alarm-12345-678-9")))
        assert results[0].ok and results[0].message_id.startswith("116012354148^")
        assert peer.problems == []
        p = peer.requests[0].params
        assert p == {"CalledNumber": "13800138000", "CalledShowNumber": "057112345678",
                     "TtsCode": "TTS_10001", "TtsParam": '{"device":"efd-1","value":"92.5"}',
                     "PlayTimes": "2", "OutId": "alarm-12345-678"}
        assert peer.requests[0].headers["x-acs-action"] == "SingleCallByTts"


def test_voice_keeps_the_per_number_limits_on_our_side():
    """A second call to the same number within a minute is not placed (the provider would
    refuse it and count it); another number is called; the peer, applying the published
    limits itself, never has to refuse."""
    with AliyunVoicePeer(KEY_ID, KEY_SECRET) as peer:
        opts = voice_options(peer.url)

        def two_calls(reactor):
            provider = aliyun_voice.AliyunVoiceProvider(opts, reactor)
            d = provider.send(message("+8613800138000"))
            d.addCallback(lambda first: provider.send(
                message("+8613800138000", "+8613800138001")).addCallback(
                    lambda second: (first, second)))
            return d
        first, second = run(two_calls)
        assert first[0].ok
        assert (second[0].ok, second[0].permanent) == (False, False)
        assert "LocalFlowControl" in second[0].error
        assert second[1].ok
        assert [r.params["CalledNumber"] for r in peer.requests] == ["13800138000",
                                                                      "13800138001"]
        assert peer.limited == [] and peer.problems == []


def test_voice_provider_errors_are_read_as_published():
    with AliyunVoicePeer(KEY_ID, KEY_SECRET, answer=lambda s: (200, {
            "Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "号码格式非法",
            "RequestId": "x"})) as peer:
        opts = voice_options(peer.url)
        results = run(lambda r: aliyun_voice.AliyunVoiceProvider(opts, r).send(
            message("+8613800138000")))
        assert results[0].permanent and "MOBILE_NUMBER_ILLEGAL" in results[0].error
    with AliyunPeer(KEY_ID, KEY_SECRET, answer=aliyun_ok) as peer:
        # the SMS stand-in refuses a voice call's action: the peers do check x-acs-action
        opts = voice_options(peer.url)
        try:
            run(lambda r: aliyun_voice.AliyunVoiceProvider(opts, r).send(
                message("+8613800138000")))
        except Exception as e:
            assert "MissingParameter" in str(e)
        else:
            raise AssertionError("wrong action accepted")
