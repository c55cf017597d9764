"""``hub ota firmware add`` on the platform store, without a running hub: a project's image
and a global one (``--global``: no project, as the API's admin upload), each audited, a
second global image of the same version refused, and the scope required and single."""

from __future__ import annotations

import json
import sqlite3

import yaml

from plugins.simulators.lwm2m.firmware import make_image
from tests.support.api_hub import hub_cli


def _audit(state: str) -> list[tuple[str, str, dict]]:
    db = sqlite3.connect(f"{state}/audit.sqlite")
    try:
        return [(r[0], r[1], json.loads(r[2])["details"]) for r in
                db.execute("SELECT action, subject, body FROM entries ORDER BY seq")]
    finally:
        db.close()


def test_firmware_add_global_and_project_images(tmp_path):
    state = str(tmp_path / "var")
    config = tmp_path / "hub.yaml"
    config.write_text(yaml.safe_dump({"hub": {"name": "otacli", "state_dir": state},
                                      "api": {"port": 0}}), encoding="utf-8")
    image = tmp_path / "efd.bin"
    image.write_bytes(make_image("2.0.0", 2000))
    add = ("ota", "firmware", "add", "--version", "2.0.0", "--models", "nb-efd", str(image))

    out = hub_cli(config, *add, "--global")
    assert out.returncode == 0, out.stderr
    out = hub_cli(config, *add, "--project", "p1")  # the same version, another scope
    assert out.returncode == 0, out.stderr
    listed = hub_cli(config, "ota", "firmware", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert sorted((r["project"] or "", r["version"]) for r in rows) == [
        ("", "2.0.0"), ("p1", "2.0.0")]
    assert [r["project"] for r in rows if r["project"] != "p1"] == [None]

    again = hub_cli(config, *add, "--global")
    assert again.returncode == 2
    assert "the global repository has firmware 2.0.0 already" in again.stderr
    for scope in ((), ("--global", "--project", "p1")):
        refused = hub_cli(config, *add, *scope)
        assert refused.returncode == 2 and "--project" in refused.stderr, refused.stderr
    assert len(hub_cli(config, "ota", "firmware", "list", "--json").stdout.splitlines()) == 2

    uploads = [(subject, d["project"], d["via"]) for action, subject, d in _audit(state)
               if action == "firmware.uploaded"]
    # the act is audited before the store takes it (as the API's upload does), so the
    # refused second global image is in the log too
    assert uploads == [("global", None, "cli"), ("p1", "p1", "cli"), ("global", None, "cli")]
