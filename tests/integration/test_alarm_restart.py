"""A hub killed (SIGKILL) between two escalation steps resumes the ladder on time after a
restart: the next step comes at its time counted from before the kill (or at once when
that passed during the restart), and the step sent before the kill is not sent again."""

from __future__ import annotations

import json
import shutil
import signal
import time

from tests.support.api_hub import populate, start_api_hub
from tests.support.peers.sms_providers import LoopbackPeer
from tests.support.services import wait_until

DELAY = 20.0
#: how late after its time (or the restart) step 1 may come: a loaded machine's restarted
#: desk took over 3 s; under DELAY, so a ladder counted from the restart still fails
LATE = 10.0
# d1's temperature is a half sine from 30 to 95 °C over the demo's period, above its 45 °C
# set point for 85 % of it. With the usual 30 s period the alarm could clear during the
# restart (which rightly stops its ladder), so the test failed now and then; a 300 s period
# keeps it up for 255 s of every 300 and leaves at most 45 s to wait for the raise.
HOT = {"transports": {"demo": {"type": "simulator", "interval": 0.2, "period": 300}}}


def _bodies(peer):
    with peer.lock:
        return [json.loads(s.body) for s in peer.requests]


def _wait(predicate, what, timeout=60.0):
    return wait_until(predicate, timeout, what=what)


def test_a_killed_hub_resumes_its_escalations_on_time(tmp_path):
    with LoopbackPeer() as hook:
        api = {"notify": {"channels": {"hook": {"type": "webhook", "url": hook.url,
                                                 "secret": "restart-secret"}},
                          "retry": {"initial": 0.2, "max": 1, "attempts": 3}}}
        hub = start_api_hub(tmp_path, api, extra=HOT)
        ids = populate(hub)
        with hub.client(hub.login("mgr1")) as mgr:
            r = mgr.put(f"/api/projects/{ids['p1']}/notification-policy", json={"steps": [
                {"delay": 0, "channel": "hook", "recipients": ["first"]},
                {"delay": DELAY, "channel": "hook", "recipients": ["second"]}]})
            assert r.status_code == 200, r.text
        _wait(lambda: [b for b in _bodies(hook) if b["recipient"] == "first"], "step 0")
        t0 = time.monotonic()  # the ladder counts from step 0 (the policy adopted the alarm)
        hub.device.close()
        assert hub.proc.stop(signal.SIGKILL) == -signal.SIGKILL

        shutil.rmtree(tmp_path / "site")  # written again by start_api_hub; var/ stays
        hub = start_api_hub(tmp_path, api, first_admin=False, extra=HOT)
        try:
            ready = time.monotonic()
            _wait(lambda: [b for b in _bodies(hook) if b["recipient"] == "second"], "step 1")
            arrived = time.monotonic()
            # counted from before the kill, not from the restart
            assert arrived - t0 >= DELAY - 0.5
            assert arrived <= max(t0 + DELAY, ready) + LATE, (arrived - t0, ready - t0)
        finally:
            hub.stop()
        # with the hub stopped nothing more can come: a step sent twice (step 0 again at the
        # restart, before step 1 was due) is in the peer's log by now
        recipients = [b["recipient"] for b in _bodies(hook)]
        assert recipients.count("first") == 1 and recipients.count("second") == 1
