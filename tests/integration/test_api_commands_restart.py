"""A command's lifecycle stays readable after the hub restarts: it is rebuilt from the
journal's command and command result records (the platform store says where to look)."""

from __future__ import annotations

from tests.support.api_hub import ROOT_PASSWORD, restart_api_hub, start_api_hub


def test_a_command_lifecycle_is_read_from_the_journal_after_a_restart(tmp_path):
    hub = start_api_hub(tmp_path)
    try:
        with hub.client(hub.login("root", ROOT_PASSWORD)) as root:
            r = root.post("/api/devices/efd-1/commands", json={"action": "trip", "wait": True})
            assert r.status_code == 202 and r.json()["status"] == "succeeded", r.text
            cid = r.json()["id"]
            before = root.get(f"/api/commands/{cid}").json()
        hub = restart_api_hub(hub)
        with hub.client(hub.login("root", ROOT_PASSWORD)) as root:
            after = root.get(f"/api/commands/{cid}")
            assert after.status_code == 200, after.text
            state = after.json()
            assert (state["device"], state["action"], state["requested_by"],
                    state["status"]) == ("efd-1", "trip", "root", "succeeded")
            statuses = [h["status"] for h in state["history"]]
            assert statuses[0] == "pending" and statuses[-1] == "succeeded"
            assert statuses == [h["status"] for h in before["history"]] or \
                "sent" in statuses  # the journal also knows when it went on the wire
            assert root.get("/api/commands/0123456789abcdef").status_code == 404
    finally:
        hub.stop()
