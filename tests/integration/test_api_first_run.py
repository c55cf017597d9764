"""The first start of a hub with the API: it says where it listens and how to make the
first admin; the admin made then (while the hub runs) logs in at once."""

from __future__ import annotations

from tests.support.api_hub import ROOT_PASSWORD, hub_cli, start_api_hub


def test_first_run_hint_and_first_admin(tmp_path):
    hub = start_api_hub(tmp_path, first_admin=False)
    try:
        log = "".join(hub.proc.lines)
        assert f"API listening on {hub.url}/ (docs {hub.url}/api/docs)" in log
        assert "no users yet: hub users add --role admin NAME" in log
        with hub.client() as c:
            assert c.post("/api/auth/login", json={"username": "root", "password":
                                                   ROOT_PASSWORD}).status_code == 401
        made = hub_cli(hub.config, "users", "add", "--role", "admin", "root",
                       "--password-stdin", stdin=ROOT_PASSWORD + "\n")
        assert made.returncode == 0, made.stderr
        hub.login("root", ROOT_PASSWORD)
        # made while the hub ran: audited through it, by the person at the terminal
        created = [e for e in hub.audit("--device", "root") if e["action"] == "user.created"]
        assert created and created[0]["details"] == {"role": "admin", "node": 1,
                                                     "via": "cli"}
    finally:
        hub.stop()
