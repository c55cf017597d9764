"""Hazard reminders have templates of their own (``reminder``) on SMS and voice: the alarm
desk's channel picks it for a reminder when the provider has one, with the parameters
``hazard`` and ``state``; without one a reminder goes as ``alarm`` (as before). Checked at
the stand-ins of Dysmsapi ``SendSms`` and Dyvmsapi ``SingleCallByTts`` over loopback
(tests/support/peers/sms_providers.py: V3 recomputed, the published parameters checked)."""

from __future__ import annotations

import json

from hub.alarmdesk.channels import SmsChannel
from hub.alarmdesk.policy import Notification
from hub.config import Secret
from hub.validate import Checker, Path, Section
from plugins.sinks.sms_cloud import aliyun, aliyun_voice
from tests.support.fresh_reactor import run
from tests.support.peers.sms_providers import AliyunPeer, AliyunVoicePeer

KEY_ID, KEY_SECRET = "LTAI5tTestKeyId", "aliyun-secret-value-123"
REMINDER = Notification(-7, -2, "sms", "+8613800138000", "hazard",
                        "[hazard 重大] #7 电气线路: hot — overdue, deadline 2026-12-08 10:00",
                        "p1", (), 7)
ALARM = Notification(12, 0, "sms", "+8613800138000", "alarm", "[alarm] d1 temperature: hot")


def checked(check, data: dict):
    checker = Checker()
    opts = check(Section(checker, Path("hub.yaml", ("provider",)), data))
    checker.raise_if_any()
    return opts


def secret() -> Secret:
    return Secret(KEY_SECRET, "env:ALIYUN_SECRET")


def test_sms_reminder_template_and_its_parameters():
    with AliyunPeer(KEY_ID, KEY_SECRET) as peer:
        opts = checked(aliyun.check_options, {
            "type": "aliyun", "access_key_id": KEY_ID, "access_key_secret": secret(),
            "sign_name": "消防监控", "endpoint": peer.url, "timeout": 5,
            "templates": {"alarm": {"code": "SMS_1", "params": ["text"]},
                          "reminder": {"code": "SMS_3", "params": ["hazard", "state", "text"]}}})
        answers = run(lambda r: SmsChannel(aliyun.AliyunProvider(opts, r)).send(REMINDER))
        assert answers.startswith("ok ")
        run(lambda r: SmsChannel(aliyun.AliyunProvider(opts, r)).send(ALARM))
        assert peer.problems == [] and peer.signatures == ["v3", "v3"]
        reminder, alarm = (s.params for s in peer.requests)
        assert reminder["TemplateCode"] == "SMS_3"
        assert json.loads(reminder["TemplateParam"]) == {
            "hazard": "7", "state": "overdue", "text": REMINDER.text}
        assert reminder["PhoneNumbers"] == "13800138000"
        assert alarm["TemplateCode"] == "SMS_1"  # an alarm keeps its own
        assert json.loads(alarm["TemplateParam"]) == {"text": ALARM.text}


def test_voice_reminder_template_before_the_deadline():
    with AliyunVoicePeer(KEY_ID, KEY_SECRET) as peer:
        opts = checked(aliyun_voice.check_options, {
            "type": "aliyun_voice", "access_key_id": KEY_ID, "access_key_secret": secret(),
            "endpoint": peer.url, "timeout": 5,
            "templates": {"alarm": {"code": "TTS_10001", "params": ["text"]},
                          "reminder": {"code": "TTS_10003", "params": ["hazard", "state"]}}})
        before = Notification(-7, -1, "call", "13900139000", "hazard", "due", "p1", (), 7)
        run(lambda r: SmsChannel(aliyun_voice.AliyunVoiceProvider(opts, r)).send(before))
        assert peer.problems == [] and peer.limited == []
        call = peer.requests[0].params
        assert (call["CalledNumber"], call["TtsCode"]) == ("13900139000", "TTS_10003")
        assert json.loads(call["TtsParam"]) == {"hazard": "7", "state": "due"}
        assert call["OutId"] == "hazard-7-1"


def test_without_a_reminder_template_a_reminder_goes_as_alarm():
    with AliyunPeer(KEY_ID, KEY_SECRET) as peer:
        opts = checked(aliyun.check_options, {
            "type": "aliyun", "access_key_id": KEY_ID, "access_key_secret": secret(),
            "sign_name": "消防监控", "endpoint": peer.url, "timeout": 5,
            "templates": {"alarm": {"code": "SMS_1", "params": ["text"]}}})
        run(lambda r: SmsChannel(aliyun.AliyunProvider(opts, r)).send(REMINDER))
        assert peer.problems == []
        sent = peer.requests[0].params
        assert sent["TemplateCode"] == "SMS_1"
        assert json.loads(sent["TemplateParam"]) == {"text": REMINDER.text}


def test_a_reminder_kind_is_accepted_in_the_templates_and_a_typo_is_not():
    checker = Checker()
    aliyun.check_options(Section(checker, Path("hub.yaml", ("provider",)), {
        "type": "aliyun", "access_key_id": KEY_ID, "access_key_secret": secret(),
        "sign_name": "x", "templates": {"alarm": "SMS_1", "remindr": "SMS_3"}}))
    assert any("'remindr' is not a message kind" in str(e) and "reminder" in str(e)
               for e in checker.errors)
