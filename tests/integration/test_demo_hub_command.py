"""`hub run` on the shipped conf/hub.yaml (the README's one command) takes commands through
`hub command`: a real process, so it lives here rather than with the demo transport's unit
tests."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from tests.support.hubproc import BIN, HubProcess

ROOT = Path(__file__).parents[2]


def test_the_default_demo_takes_hub_command(tmp_path):
    """`hub run` on conf/hub.yaml (state in a temporary directory, faster ticks): `hub
    command demo-normal trip` succeeds and `hub readings` shows the currents at 0; close
    brings them back."""
    config = yaml.safe_load((ROOT / "conf" / "hub.yaml").read_text(encoding="utf-8"))
    config["hub"]["state_dir"] = str(tmp_path / "var")
    config["journal"]["commit_interval_ms"] = 5
    config["transports"]["demo"]["interval"] = 0.5
    config["api"]["port"] = 0  # conf/hub.yaml's 8088 may be taken by another run
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")

    def cli(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "hub"), *argv, "-c", str(path)], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    def current_a() -> float:
        out = cli("readings", "--device", "demo-normal", "--latest", "--json")
        assert out.returncode == 0, out.stderr
        return next(r["value"] for r in map(json.loads, out.stdout.splitlines())
                    if r["quantity"] == "current" and r["channel"] == "A")

    hub = HubProcess(path, ROOT)
    try:
        hub.wait_for("hub hub started", timeout=30)
        trip = cli("command", "--device", "demo-normal", "trip", "--json", "--by", "tester")
        assert trip.returncode == 0, trip.stdout + trip.stderr
        answer = json.loads(trip.stdout)
        assert (answer["status"], answer["detail"]) == ("succeeded", "breaker opened")
        assert current_a() == 0
        test = cli("command", "--device", "demo-normal", "self_test")
        assert test.returncode == 0 and "succeeded: self-test passed" in test.stdout
        close = cli("command", "--device", "demo-normal", "close", "--json")
        assert json.loads(close.stdout)["status"] == "succeeded"
        assert current_a() > 5
        refused = cli("command", "--device", "demo-normal", "reboot", "--json")
        assert json.loads(refused.stdout)["status"] == "failed"
    finally:
        code = hub.stop()
    assert code == 0
