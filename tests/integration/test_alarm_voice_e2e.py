"""End to end with Alibaba Cloud on V3: d1 overheats → the SMS step reaches the Dysmsapi
stand-in V3-signed → the voice step (Dyvmsapi SingleCallByTts) follows after its delay,
checked against the published request by its stand-in, within the per-number limits →
a hazard opened from the alarm with a deadline gets its reminder through the policy's
``hazard_reminders`` (on the voice channel) → an acknowledgement stops the ladder → every
attempt, with the provider's answer, is readable through the API."""

from __future__ import annotations

import time

from tests.support.api_hub import populate, start_api_hub
from tests.support.peers.sms_providers import AliyunPeer, AliyunVoicePeer
from tests.support.services import wait_until
from tests.support.sms_config import KEY_ID, SECRET


def _wait(predicate, what, timeout=45.0):
    return wait_until(predicate, timeout, interval=0.1, what=what)


def test_sms_then_voice_then_reminder_then_ack(tmp_path):
    (tmp_path / "aliyun.secret").write_text(SECRET + "\n")
    with AliyunPeer(KEY_ID, SECRET) as sms, AliyunVoicePeer(KEY_ID, SECRET) as voice:
        secret = {"file": str(tmp_path / "aliyun.secret")}
        notify = {"channels": {
            "sms": {"type": "sms", "provider": {
                "type": "aliyun", "access_key_id": KEY_ID, "access_key_secret": secret,
                "sign_name": "电气火灾监控", "endpoint": sms.url,
                "templates": {"alarm": "SMS_1", "summary": "SMS_2"}}},
            "call": {"type": "voice", "provider": {
                "type": "aliyun_voice", "access_key_id": KEY_ID,
                "access_key_secret": secret, "endpoint": voice.url,
                "templates": {"alarm": {"code": "TTS_10001", "params": ["text"]},
                              "summary": {"code": "TTS_10002", "params": ["count"]}}}}},
            "retry": {"initial": 0.2, "max": 1, "attempts": 3}}
        hub = start_api_hub(tmp_path, {"notify": notify})
        try:
            ids = populate(hub)
            with hub.client(hub.login("op1")) as op, hub.client(hub.login("mgr1")) as mgr:
                policy = {"steps": [
                    {"delay": 0, "channel": "sms", "recipients": ["13800138000"]},
                    {"delay": 2, "channel": "call", "recipients": ["13800138000"]},
                    {"delay": 3600, "channel": "call", "recipients": ["13900139000"]}],
                    "hazard_reminders": {"before": 3600, "step": 2}}
                r = mgr.put(f"/api/projects/{ids['p1']}/notification-policy", json=policy)
                assert r.status_code == 200, r.text
                _wait(lambda: sms.requests, "the SMS request")
                t_sms = time.monotonic()
                assert sms.signatures[0] == "v3"
                _wait(lambda: voice.requests, "the voice call")
                assert time.monotonic() - t_sms > 1.0  # after its delay
                call = voice.requests[0].params
                assert (call["CalledNumber"], call["TtsCode"]) == ("13800138000", "TTS_10001")
                assert "d1" in call["TtsParam"] and call["OutId"].startswith("alarm-")
                alarm_id = op.get("/api/alarms", params={"device": "d1"}).json()["items"][0][
                    "id"]
                # a hazard due in 30 minutes: its "before" reminder calls step 2's number
                r = op.post("/api/hazards", json={
                    "alarm_id": alarm_id, "category": "电气线路", "description": "hot",
                    "deadline": time.time() + 1800})
                assert r.status_code == 201, r.text
                hid = r.json()["id"]
                _wait(lambda: [s for s in voice.requests
                               if s.params["CalledNumber"] == "13900139000"],
                      "the hazard reminder call")
                reminders = _wait(lambda: [
                    n for n in op.get(f"/api/hazards/{hid}/notifications").json()
                    if n["status"] == "sent"], "the reminder's end")
                assert [(n["step"], n["channel"]) for n in reminders] == [(-1, "call")]
                assert reminders[0]["attempt_log"][0]["outcome"] == "sent"
                r = op.post(f"/api/alarms/{alarm_id}/actions", json={"action": "acknowledge"})
                assert r.status_code == 200, r.text
                attempts = _wait(lambda: [
                    n for n in op.get(f"/api/alarms/{alarm_id}/notifications").json()
                    if n["status"] != "pending"], "the attempts' ends")
                assert {(n["channel"], n["status"]) for n in attempts} == {
                    ("sms", "sent"), ("call", "sent")}
                assert all(n["attempt_log"] and n["attempt_log"][-1]["answer"]
                           for n in attempts)
            assert sms.problems == [] and voice.problems == [] and voice.limited == []
            assert len(voice.requests) == 2  # one alarm call, one reminder: nothing twice
        finally:
            hub.stop()
    acts = {(e["actor"], e["action"]) for e in hub.audit()}
    assert ("hub", "hazard.reminded") in acts
