"""Tencent Cloud VMS ``SendTtsVoice``: the request is the published example's, signed with
TC3 for service ``vms`` (checked here with an independent computation), and its answers
are read as the documentation gives them."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest
from twisted.internet.task import Clock

from hub.config import Secret
from hub.contracts import SmsMessage
from hub.validate import Checker, Path, Section
from plugins.sinks.sms_cloud import common, tencent_voice
from plugins.sinks.sms_cloud.http_client import HttpResponse

#: https://cloud.tencent.com/document/api/1128/51558, 示例1 指定模板发送语音通知
PUBLISHED_BODY = {"TemplateId": "4356", "TemplateParamSet": ["7652"], "PlayTimes": 2,
                  "CalledNumber": "+8613788888888", "SessionContext": "sc-t",
                  "VoiceSdkAppid": "1400006666"}
SECRET_ID, SECRET_KEY = "AKIDvoice", "voice-secret-key"
TS = 1551113065


def provider():
    checker = Checker()
    opts = tencent_voice.check_options(Section(checker, Path("hub.yaml", ("provider",)), {
        "type": "tencent_voice", "secret_id": SECRET_ID,
        "secret_key": Secret(SECRET_KEY, "env HUB_TEST"),  # as the loader reads {env:}
        "voice_sdk_app_id": "1400006666",
        "templates": {"alarm": {"id": 4356, "params": ["code"]}}}))
    assert checker.errors == []
    clock = Clock()
    clock.advance(TS)
    return tencent_voice.TencentVoiceProvider(opts, clock)


def _tc3(secret_key, date, service, text):
    k = hmac.new(("TC3" + secret_key).encode(), date.encode(), hashlib.sha256).digest()
    k = hmac.new(k, service.encode(), hashlib.sha256).digest()
    k = hmac.new(k, b"tc3_request", hashlib.sha256).digest()
    return hmac.new(k, text.encode(), hashlib.sha256).hexdigest()


def test_the_request_is_the_published_example_signed_for_vms():
    p = provider()
    msg = SmsMessage(("13788888888",), "text", "alarm", {"code": "7652"}, "sc-t")
    headers, body = p.build_request(msg, "13788888888")
    assert json.loads(body) == PUBLISHED_BODY
    assert (headers["X-TC-Action"], headers["X-TC-Version"], headers["Host"],
            headers["X-TC-Region"]) == ("SendTtsVoice", "2020-09-02",
                                        "vms.tencentcloudapi.com", "ap-guangzhou")
    canonical = "\n".join([
        "POST", "/", "", "content-type:application/json; charset=utf-8\n"
        "host:vms.tencentcloudapi.com\nx-tc-action:sendttsvoice\n",
        "content-type;host;x-tc-action", hashlib.sha256(body).hexdigest()])
    date = datetime.fromtimestamp(TS, UTC).strftime("%Y-%m-%d")
    text = "\n".join(["TC3-HMAC-SHA256", str(TS), f"{date}/vms/tc3_request",
                      hashlib.sha256(canonical.encode()).hexdigest()])
    assert headers["Authorization"] == (
        f"TC3-HMAC-SHA256 Credential={SECRET_ID}/{date}/vms/tc3_request, "
        f"SignedHeaders=content-type;host;x-tc-action, "
        f"Signature={_tc3(SECRET_KEY, date, 'vms', text)}")


def test_a_kind_without_a_template_is_a_permanent_failure():
    p = provider()
    assert "no voice template" in p.build_request(
        SmsMessage(("+8613788888888",), "t", "summary", {}, "k"), "+8613788888888")


def test_answers():
    p = provider()
    ok = {"Response": {"SendStatus": {"CallId": "12582bce-4f00-11eb-9b3b-525400c5ba6c",
                                      "SessionContext": "sc-t"},
                       "RequestId": "a2a3c2a0-4f00-11eb-9b3b-525400c5ba6c"}}
    r = p._read(HttpResponse(200, {}, json.dumps(ok).encode()), "+8613788888888")
    assert r.ok and r.message_id.startswith("12582bce")
    bad = {"Response": {"Error": {"Code": "InvalidParameterValue.IncorrectPhoneNumber",
                                  "Message": "wrong number"}, "RequestId": "x"}}
    r = p._read(HttpResponse(200, {}, json.dumps(bad).encode()), "+86123")
    assert not r.ok and r.permanent
    busy = {"Response": {"Error": {"Code": "RequestLimitExceeded", "Message": "slow down"},
                         "RequestId": "x"}}
    with pytest.raises(common.ProviderError):
        p._read(HttpResponse(200, {}, json.dumps(busy).encode()), "+86123")


def test_mainland_numbers_get_their_country_code():
    assert tencent_voice.e164("13788888888") == "+8613788888888"
    assert tencent_voice.e164("+85291234567") == "+85291234567"
