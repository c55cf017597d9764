"""The scheduled report push, end to end in a real hub process: the schedule fires (its
check every 0.5 s here), yesterday's daily report of each project is made and kept under
``<state_dir>/reports``, and its summary with the download link reaches a webhook
receiver (signed); the link downloads the kept PDF through the API."""

from __future__ import annotations

import json
import time

from hub.alarmdesk.channels import sign
from hub.reports.data import last_period
from tests.support.api_hub import populated_hub
from tests.support.peers.sms_providers import LoopbackPeer
from tests.support.services import wait_until

HOOK_SECRET = "report-hook-0042"
TZ = 8 * 3600


def test_a_scheduled_report_is_kept_and_its_summary_and_link_are_pushed(tmp_path):
    # reports were first scheduled here three days ago: yesterday's is due, not older ones
    reports = tmp_path / "var" / "reports"
    reports.mkdir(parents=True)
    (reports / ".since").write_text(f"{time.time() - 3 * 86400:.0f}\n")
    with LoopbackPeer() as hook:
        notify = {"channels": {"hook": {"type": "webhook", "url": hook.url + "reports",
                                        "secret": HOOK_SECRET, "timeout": 5}}}
        rollups = {"tz_offset_hours": 8, "reports": {
            "daily": "00:00", "weekly": None, "monthly": None, "formats": ["pdf"],
            "check_interval": 0.5,
            "notify": [{"channel": "hook", "recipients": ["ops-room"]}]}}
        with populated_hub(tmp_path, {"notify": notify}, {"rollups": rollups}) as hub:
            day = last_period("daily", time.time(), TZ)
            wait_until(lambda: len(hook.requests) >= 2, 60, interval=0.1,
                       what="both projects' report summaries at the webhook")
            assert hook.problems == []
            bodies = {}
            for seen in hook.requests:
                # the alarm desk's signature (checked independently in test_alarm_notify)
                assert seen.path == "/reports" and seen.headers["x-hub-signature"] == sign(
                    HOOK_SECRET, seen.headers["x-hub-timestamp"], seen.body)
                body = json.loads(seen.body)
                bodies[body["project"]] = body
            assert sorted(bodies) == ["p1", "p2"]
            for code in ("p1", "p2"):
                body = bodies[code]
                link = (f"{hub.url}/api/projects/{hub.ids[code]}/reports/download?kind=daily"
                        f"&period={day}&format=pdf")
                assert (body["recipient"], body["alarm_id"]) == ("ops-room", 0)
                text = body["text"]
                assert text.startswith(f"【项目 {code}日报】{day}：安全评级 "), text
                assert "分），报警 " in text and " kWh。" in text
                assert text.endswith(f" 下载：{link}"), text
                kept = reports / code / "daily" / f"{day}.pdf"
                assert kept.read_bytes().startswith(b"%PDF")
            with hub.client(hub.login("op1")) as op:
                got = op.get(bodies["p1"]["text"].rsplit("下载：", 1)[1])
                assert got.status_code == 200, got.text
                assert got.content == (reports / "p1" / "daily" / f"{day}.pdf").read_bytes()
                listed = op.get(f"/api/projects/{hub.ids['p1']}/reports").json()
                assert [(r["kind"], r["period"], r["format"]) for r in listed] == [
                    ("daily", day, "pdf")]
            assert len(hook.requests) == 2  # made once: the next checks find them kept
