"""The README's API examples run, as written, against a live hub (curl in bash)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.api_hub import hub_cli, start_api_hub
from tests.support.services import wait_until

README = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")


def api_section() -> str:
    return README.split("## HTTP API", 1)[1].split("\n## ", 1)[0]


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_readme_curl_examples_run(tmp_path):
    blocks = re.findall(r"```sh\n(.*?)```", api_section(), flags=re.S)
    example = next(b for b in blocks if "curl" in b)
    hub = start_api_hub(tmp_path)
    try:
        made = hub_cli(hub.config, "users", "add", "--role", "admin", "alice",
                       "--password-stdin", stdin="Chang3-me-now!\n")
        assert made.returncode == 0, made.stderr
        root = hub.client(hub.login("root", "Adm1n-pass-0042"))
        wait_until(lambda: root.get("/api/events", params={  # d1 overheats: an alarm to ack
            "device": "d1", "kind": "alarm", "state": "raised"}).json()["items"], 30, 0.2,
            what="d1's alarm")
        env = {**os.environ, "API": hub.url, "PROJECT": "p1", "DEVICE": "d1",
               "BREAKER": "efd-1"}
        out = subprocess.run(["bash", "-c", "set -eo pipefail\n" + example], env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        assert '"name":"alice"' in out.stdout
        assert '"status":"succeeded"' in out.stdout  # the command, read back
        assert '"key":"hubk_' in out.stdout
        assert "hub_ingest_readings_total" in out.stdout
        users = {u["name"] for u in root.get("/api/users").json()}
        assert "bob" in users
        root.close()
    finally:
        hub.stop()
