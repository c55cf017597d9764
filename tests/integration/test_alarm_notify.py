"""End to end: d1 overheats → the project's policy sends an SMS to the Alibaba Cloud
stand-in (its wire format and signature checked there) → the webhook step follows after its
delay, signed → an operator acknowledges through the API → the ladder is gone from the
store → every attempt and the provider's answer is readable through the API → a hazard is
opened from the alarm, rectified, checked and closed → the statistics show the times."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from hub.store import SqliteStore
from tests.support.api_hub import populate, start_api_hub
from tests.support.peers.sms_providers import AliyunPeer, LoopbackPeer
from tests.support.services import wait_until
from tests.support.sms_config import KEY_ID, SECRET

HOOK_SECRET = "hook-secret-0042"


def _wait(predicate, what, timeout=30.0):
    return wait_until(predicate, timeout, interval=0.1, what=what)


def test_sms_then_webhook_then_ack_stops_it(tmp_path):
    (tmp_path / "aliyun.secret").write_text(SECRET + "\n")
    with AliyunPeer(KEY_ID, SECRET) as sms, LoopbackPeer() as hook:
        notify = {"channels": {
            "sms": {"type": "sms", "provider": {
                "type": "aliyun", "access_key_id": KEY_ID,
                "access_key_secret": {"file": str(tmp_path / "aliyun.secret")},
                "sign_name": "电气火灾监控", "endpoint": sms.url,
                "templates": {k: f"SMS_{k}" for k in ("alarm", "fault", "offline",
                                                       "recovery", "summary")}}},
            "hook": {"type": "webhook", "url": hook.url + "robot", "secret": HOOK_SECRET,
                     "timeout": 5}},
            "retry": {"initial": 0.2, "max": 1, "attempts": 3}}
        hub = start_api_hub(tmp_path, {"notify": notify})
        try:
            ids = populate(hub)
            with hub.client(hub.login("op1")) as op, hub.client(hub.login("mgr1")) as mgr:
                r = op.put(f"/api/users/{ids['op1']}/notification-preferences",
                           json={"contacts": [{"channel": "hook", "address": "op1-pager"}]})
                assert r.status_code == 200, r.text
                bad = op.put(f"/api/users/{ids['op1']}/notification-preferences",
                             json={"contacts": [{"channel": "pigeon", "address": "x"}]})
                assert bad.status_code == 422
                policy = {"steps": [
                    {"delay": 0, "channel": "sms", "recipients": ["13800138000"]},
                    {"delay": 2, "channel": "hook", "role": "operator"},
                    {"delay": 3600, "channel": "sms", "recipients": ["13900139000"]}]}
                assert op.put(f"/api/projects/{ids['p1']}/notification-policy",
                              json=policy).status_code == 403
                wrong = mgr.put(f"/api/projects/{ids['p1']}/notification-policy",
                                json={"steps": [{"delay": 0, "channel": "fax", "role": "x"}]})
                assert wrong.status_code == 422
                r = mgr.put(f"/api/projects/{ids['p1']}/notification-policy", json=policy)
                assert r.status_code == 200, r.text
                assert op.get(f"/api/projects/{ids['p1']}/notification-policy"
                              ).json()["steps"][1]["role"] == "operator"

                _wait(lambda: sms.requests, "the SMS request")
                t_sms = time.monotonic()
                assert sms.problems == []
                params = sms.requests[0].params
                assert (params["PhoneNumbers"], params["TemplateCode"]) == ("13800138000",
                                                                            "SMS_alarm")
                _wait(lambda: hook.requests, "the webhook step")
                assert time.monotonic() - t_sms > 1.0  # after its delay, not with the SMS
                seen = hook.requests[0]
                assert seen.path == "/robot"
                expected = "sha256=" + hmac.new(
                    HOOK_SECRET.encode(), seen.headers["x-hub-timestamp"].encode() + b"."
                    + seen.body, hashlib.sha256).hexdigest()
                assert seen.headers["x-hub-signature"] == expected
                body = json.loads(seen.body)
                assert (body["recipient"], body["step"], body["severity"]) == (
                    "op1-pager", 1, "alarm")
                alarm_id = body["alarm_id"]

                store = SqliteStore(str(tmp_path / "var" / "platform.sqlite"))
                store.open()
                try:
                    assert [row[0] for row in store.esc_load()] == [alarm_id]
                    r = op.post(f"/api/alarms/{alarm_id}/actions",
                                json={"action": "acknowledge", "note": "on site"})
                    assert r.status_code == 200, r.text
                    _wait(lambda: store.esc_load() == [], "the ladder to stop")
                finally:
                    store.close()
                attempts = _wait(lambda: [
                    n for n in op.get(f"/api/alarms/{alarm_id}/notifications").json()
                    if n["status"] != "pending"], "the attempts' ends")
                assert len(attempts) == 2
                assert {(n["channel"], n["recipient"], n["status"]) for n in attempts} == {
                    ("sms", "13800138000", "sent"), ("hook", "op1-pager", "sent")}
                assert all(n["answer"] for n in attempts)
                assert len(sms.requests) == 1 and len(hook.requests) == 1

                # the hazard it revealed: opened, rectified, checked, closed
                r = op.post("/api/hazards", json={"alarm_id": alarm_id, "category": "电气线路",
                                                  "description": "terminal overheats"})
                assert r.status_code == 201, r.text
                hid = r.json()["id"]
                for to in ("rectifying", "checked", "closed"):
                    r = op.post(f"/api/hazards/{hid}/transitions", json={"to": to})
                    assert r.status_code == 200, r.text
                stats = op.get("/api/stats/alarms", params={"project": "p1"}).json()
                ack = stats["alarms"]["time_to_acknowledge"]
                assert ack["count"] == 1 and ack["median"] > 1.0  # after the webhook step
                assert stats["hazards"]["by_state"] == {"closed": 1}
                assert stats["hazards"]["time_to_close"]["count"] == 1
        finally:
            hub.stop()
    acts = {(e["actor"], e["action"]) for e in hub.audit()}
    assert ("mgr1", "alarm.policy_changed") in acts
    assert ("op1", "user.notification_preferences") in acts
