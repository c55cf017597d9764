"""End to end: `hub run` as a process, a device on a loopback socket raising an alarm, the
``sms`` sink sending it through the real ``aliyun`` provider to a loopback Dysmsapi peer,
then `hub events ack` through the admin socket of the running hub."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from hub.journal import Journal
from tests.hubproc import BIN, HubProcess
from tests.peers.sms_providers import AliyunPeer
from tests.services import free_port, wait_until
from tests.test_e2e import Device, cli

KEY_ID, SECRET = "LTAI-test", "s3cret"


def sms_config(tmp_path: Path, port: int, endpoint: str, **sink) -> Path:
    config = {
        "hub": {"state_dir": str(tmp_path / "var")},
        "journal": {"commit_interval_ms": 2},
        "alarms": {"defaults": {"temperature": {"alarm": 80, "hysteresis": 2}}},
        "transports": {"lines": {"type": "line_tcp", "port": port}},
        "devices": [{"id": "efd-1", "model": "json_demo", "transport": "lines",
                     "address": "EFD0001", "name": "1号配电箱", "location": "A栋1层",
                     "project": "campus-a"}],
        "sinks": {"sms": {
            "type": "sms",
            "provider": {"type": "aliyun", "access_key_id": KEY_ID,
                         "access_key_secret": {"file": "aliyun.secret"},
                         "sign_name": "电气火灾监控",
                         "endpoint": endpoint,
                         "templates": {k: f"SMS_{k}" for k in
                                       ("alarm", "fault", "offline", "recovery", "summary")}},
            "recipients": {"duty": ["13800138000"]},
            "routes": [{"notify": ["duty"], "levels": ["alarm"], "kinds": ["alarm"]}],
            **sink}},
    }
    (tmp_path / "aliyun.secret").write_text(SECRET + "\n")
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return path


def hub_cli(config: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "hub"), *args, "-c", str(config)], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_alarm_reaches_the_provider_and_is_acknowledged_through_the_cli(vendor_dist, tmp_path):
    port = free_port()
    with AliyunPeer(KEY_ID, SECRET) as peer:
        config = sms_config(tmp_path, port, peer.url)
        hub = HubProcess(config, tmp_path)
        try:
            hub.wait_for("hub hub started")
            dev = Device(port, "EFD0001")
            assert dev.send({"temperature/T1": 91.5}).startswith("ok ")
            wait_until(lambda: peer.requests, 30, what="the SendSms request")
            [seen] = peer.requests
            assert peer.problems == []
            assert seen.params["PhoneNumbers"] == "13800138000"  # domestic form
            assert seen.params["TemplateCode"] == "SMS_alarm"
            params = json.loads(seen.params["TemplateParam"])
            assert params["device"] == "1号配电箱" and params["location"] == "A栋1层"
            assert (params["quantity"], params["value"], params["unit"]) == ("温度", "91.5", "°C")
            assert params["set_point"] == "80" and params["level"] == "报警"

            events = cli(config, tmp_path, "events")
            alarm = next(e for e in events if e["level"] == "alarm")
            out = hub_cli(config, tmp_path, "events", "ack", alarm["id"], "--by", "alice",
                          "--note", "breaker checked")
            assert out.returncode == 0, out.stderr
            assert f"event {alarm['id']} (efd-1) acknowledged by alice" in out.stdout
            out = hub_cli(config, tmp_path, "events", "ack", "0123456789abcdef", "--by", "bob")
            assert out.returncode == 2
            assert "no event with id '0123456789abcdef'" in out.stderr
            assert len(cli(config, tmp_path, "events")) == len(events)  # listing unchanged
            dev.close()
        finally:
            assert hub.stop() == 0
    out = hub_cli(config, tmp_path, "events", "ack", alarm["id"], "--by", "alice")
    assert out.returncode == 2 and "no hub is listening" in out.stderr
    j = Journal(str(tmp_path / "var" / "journal.sqlite"), clock=None, readonly=True)
    j.open()
    try:
        [ack] = j.acknowledgements()
        assert (ack.event_id, ack.by, ack.note, ack.device) == (
            alarm["id"], "alice", "breaker checked", "efd-1")
        sent = [d for _, d in j.deliveries(0, "sms")]
        assert [(d.status.value, d.target, d.event_ids) for d in sent] == [
            ("sent", "+8613800138000", (alarm["id"],))]
        assert sent[0].message_id.startswith("9006197469364984")
        assert j.get_cursor("sms") > 0
    finally:
        j.close()


@pytest.mark.parametrize("answer", ["isv.MOBILE_NUMBER_ILLEGAL"])
def test_a_refused_number_becomes_a_fault_event(vendor_dist, tmp_path, answer):
    from tests.peers.sms_providers import aliyun_error

    port = free_port()
    with AliyunPeer(KEY_ID, SECRET, answer=lambda seen: aliyun_error(answer, "bad")) as peer:
        config = sms_config(tmp_path, port, peer.url)
        hub = HubProcess(config, tmp_path)
        try:
            hub.wait_for("hub hub started")
            dev = Device(port, "EFD0001")
            assert dev.send({"temperature/T1": 91.5}).startswith("ok ")
            hub.wait_for("refused for good")
            dev.close()
            wait_until(lambda: [e for e in cli(config, tmp_path, "events")
                                if e["code"] == "sms_delivery_failed"], 30,
                       what="the sms_delivery_failed fault")
        finally:
            assert hub.stop() == 0
    assert len(peer.requests) == 1  # a permanent failure is not retried
