"""The CLI as a new user meets it (issue 12): paths relative to the configuration file,
a stopped hub said so, acknowledgements shown, one time rule, a closed pipe, nulls, notes
about unknown devices and quantities."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from twisted.internet.task import Clock

from hub.cli import main
from hub.cli.helpers import format_time, hub_status, parse_time
from hub.journal import Journal
from hub.model import Acknowledgement, Event, EventKind, EventState, Level, Reading
from tests.hubproc import BIN

ROOT = Path(__file__).parent.parent


def write_config(directory: Path, **extra) -> Path:
    """A hub.yaml whose state_dir is *relative* ("var"), as a user writes it."""
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "hub": {"state_dir": "var"},
        "transports": {"demo": {"type": "simulator", "interval": 5}},
        "devices": [
            {"id": "d1", "model": "simulated", "transport": "demo", "address": "normal",
             "heartbeat": {"interval": 60, "timeout_count": 3}},
            {"id": "d2", "model": "simulated", "transport": "demo", "address": "overheat"},
        ],
        **extra,
    }
    path = directory / "hub.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return path


def fill_journal(state_dir: Path, readings: int = 3, seen: float | None = None) -> None:
    """d1 seen at ``seen`` with some readings, an alarm on d1 acknowledged by alice."""
    state_dir.mkdir(parents=True, exist_ok=True)
    j = Journal(str(state_dir / "journal.sqlite"), clock=Clock())
    j.open()
    now = time.time() if seen is None else seen
    j.append([Reading("d1", "temperature", 20.0 + i % 50, now - readings + i, "T1")
              for i in range(readings)])
    j.append([Event("d1", EventKind.ALARM, "temperature", EventState.RAISED, now,
                    Level.ALARM, "T1", id="ev-1", value=90.0, set_point=80.0),
              Acknowledgement("ev-1", "alice", now + 1, "d1", "breaker checked")])
    j.touch("d1", now)
    j.flush()
    j.close()


def run_json(capsys, *argv: str) -> tuple[int, list[dict], str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


# ---- paths relative to the configuration file -------------------------------------------


def test_devices_from_another_directory_read_the_configs_state(tmp_path, monkeypatch, capsys):
    """`hub devices -c /abs/path/hub.yaml` run elsewhere finds the journal beside the file
    (state_dir: var), instead of showing every device as never seen."""
    config = write_config(tmp_path / "site")
    fill_journal(tmp_path / "site" / "var")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, rows, _ = run_json(capsys, "devices", "-c", str(config), "--json")
    assert code == 0
    assert rows[0]["id"] == "d1" and rows[0]["last_seen"] is not None
    assert rows[0]["active_events"] == 1
    assert not (elsewhere / "var").exists()


def test_relative_paths_resolve_from_the_configuration_file(tmp_path, monkeypatch):
    from hub.config import load_config
    from hub.pluginmanager import make_plugins

    (tmp_path / "etc" / "maps").mkdir(parents=True)
    (tmp_path / "etc" / "maps" / "efd.yaml").write_text(
        (ROOT / "conf" / "devices" / "efd-example.yaml").read_text(encoding="utf-8"),
        encoding="utf-8")
    config = write_config(tmp_path / "etc", models={"efd": {"type": "modbus_map",
                                                            "map": "maps/efd.yaml"}},
                          journal={"path": "db/j.sqlite"}, audit={"path": "../audit.sqlite"})
    monkeypatch.chdir(tmp_path)
    cfg = load_config("etc/hub.yaml", make_plugins())
    assert cfg.state_dir == str(tmp_path / "etc" / "var")
    assert cfg.journal.path == str(tmp_path / "etc" / "db" / "j.sqlite")
    assert cfg.audit.path == str(tmp_path / "audit.sqlite")
    assert cfg.models["efd"].options is not None
    assert load_config(str(config), make_plugins()).state_dir == cfg.state_dir


def test_the_embedded_default_keeps_its_state_in_the_checkout(monkeypatch):
    """conf/hub.yaml says state_dir: ../var: `make run` keeps using <checkout>/var."""
    from hub.config import load_config
    from hub.pluginmanager import make_plugins

    monkeypatch.chdir(ROOT)
    assert load_config("conf/hub.yaml", make_plugins()).state_dir == str(ROOT / "var")


# ---- a hub that is not running ---------------------------------------------------------


def test_devices_and_metrics_say_the_hub_is_not_running(tmp_path, capsys):
    config = write_config(tmp_path)
    stopped_at = time.time() - 600
    fill_journal(tmp_path / "var", seen=time.time() - 5)  # "online" by its last-seen time
    (tmp_path / "var" / "metrics.json").write_text(json.dumps(
        {"hub": "hub", "ts": stopped_at, "metrics": [
            {"name": "devices.online", "labels": {}, "value": 1}]}))
    code, rows, err = run_json(capsys, "devices", "-c", str(config), "--json")
    assert code == 0
    assert f"the hub is not running (since {format_time(stopped_at)})" in err
    assert [r["online"] for r in rows] == [None, None]
    assert main(["devices", "-c", str(config)]) == 0
    out, _ = capsys.readouterr()
    assert "online" not in out and "unknown" in out

    code, [doc], err = run_json(capsys, "metrics", "-c", str(config), "--json")
    assert doc["running"] is False and "the hub is not running (since" in err
    assert main(["metrics", "-c", str(config)]) == 0
    assert "the hub is not running" in capsys.readouterr().out


def test_a_listening_admin_socket_means_running(tmp_path, capsys):
    config = write_config(tmp_path)
    fill_journal(tmp_path / "var", seen=time.time() - 5)
    assert hub_status(str(tmp_path / "var")).running is False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(tmp_path / "var" / "hub.sock"))
        server.listen(4)
        assert hub_status(str(tmp_path / "var")).running is True
        code, rows, err = run_json(capsys, "devices", "-c", str(config), "--json")
    assert [r["online"] for r in rows] == [True, False] and err == ""
    # a killed hub leaves its socket behind, with nobody listening
    assert hub_status(str(tmp_path / "var")).running is False


# ---- acknowledgements, nulls, notes ------------------------------------------------------


def test_events_show_acknowledgements(tmp_path, capsys):
    config = write_config(tmp_path)
    fill_journal(tmp_path / "var")
    code, [event], _ = run_json(capsys, "events", "-c", str(config), "--json")
    assert code == 0
    assert [(a["by"], a["note"]) for a in event["acks"]] == [("alice", "breaker checked")]
    assert event["acks"][0]["time"] == format_time(event["acks"][0]["ts"])
    assert main(["events", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "acknowledged" in out.splitlines()[0]
    assert "alice" in out and "(breaker checked)" in out


def test_never_seen_device_has_null_last_seen(tmp_path, capsys):
    config = write_config(tmp_path)
    fill_journal(tmp_path / "var")
    _, rows, _ = run_json(capsys, "devices", "-c", str(config), "--json")
    assert rows[1]["id"] == "d2" and rows[1]["last_seen"] is None
    assert rows[1]["online"] is None  # and no hub runs here to tell


def test_unknown_device_and_quantity_are_explained(tmp_path, capsys):
    config = write_config(tmp_path)
    fill_journal(tmp_path / "var")
    code, rows, err = run_json(capsys, "events", "-c", str(config), "--device", "no-such-dev",
                               "--json")
    assert code == 0 and rows == []
    assert "'no-such-dev' is not declared in" in err
    code = main(["readings", "-c", str(config), "--device", "d1", "--quantity", "temp"])
    err = capsys.readouterr().err
    assert code == 2
    assert "'temp' is not a quantity; one of:" in err and "temperature" in err


# ---- times: one rule for input and output -----------------------------------------------


@pytest.fixture
def shanghai(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_times_are_local_with_offset_or_utc(shanghai):
    ts = 1796371200.0  # 2026-12-04T08:00:00Z
    assert format_time(ts) == "2026-12-04T16:00:00.000+08:00"
    assert format_time(ts, utc=True) == "2026-12-04T08:00:00.000+00:00"
    assert parse_time("2026-12-04T16:00:00") == ts  # naive: local, like the output
    assert parse_time("2026-12-04T08:00:00", utc=True) == ts  # naive with --utc: UTC
    assert parse_time(format_time(ts)) == ts and parse_time(format_time(ts, True)) == ts


def test_readings_print_local_time_and_utc_on_request(tmp_path, capsys, shanghai):
    config = write_config(tmp_path)
    fill_journal(tmp_path / "var", readings=1, seen=1796371200.0 + 1)
    assert main(["readings", "-c", str(config), "--device", "d1", "--json"]) == 0
    [r] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert r["time"] == "2026-12-04T16:00:00.000+08:00"
    assert main(["readings", "-c", str(config), "--device", "d1", "--utc"]) == 0
    out = capsys.readouterr().out
    assert "time (UTC)" in out and "2026-12-04T08:00:00.000+00:00" in out
    # the same naive time means 08:00 UTC with --utc: the reading at 08:00:00Z is included
    assert main(["readings", "-c", str(config), "--device", "d1", "--utc", "--json",
                 "--since", "2026-12-04T08:00:00"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
    # ... and 08:00 local (00:00 UTC, before it) without
    assert main(["readings", "-c", str(config), "--device", "d1", "--json",
                 "--since", "2026-12-04T16:00:01"]) == 0
    assert capsys.readouterr().out == ""


# ---- a closed pipe ------------------------------------------------------------------------


def test_a_closed_pipe_ends_quietly(tmp_path):
    """`hub readings … --json | head -1`: no BrokenPipeError traceback."""
    config = write_config(tmp_path)
    fill_journal(tmp_path / "var", readings=5000)
    proc = subprocess.Popen([str(BIN / "hub"), "readings", "-c", str(config), "--device", "d1",
                             "--json", "--limit", "5000"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "0"})
    json.loads(proc.stdout.readline())
    proc.stdout.close()  # what `head -1` does once it has its line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, err
    assert err == ""


def test_the_default_config_missing_here_says_how_to_name_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as done:
        main(["devices"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert f"conf/hub.yaml: not found in {tmp_path}" in err and "-c /etc/hub/hub.yaml" in err
