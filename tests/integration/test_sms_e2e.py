"""End to end: `hub run` as a process, a device on a loopback socket raising an alarm, the
``sms`` sink sending it through the real ``aliyun`` provider to a loopback Dysmsapi peer,
then `hub events ack` through the admin socket of the running hub."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from hub.journal import Journal
from tests.support.hubcli import cli
from tests.support.hubproc import BIN, HubProcess
from tests.support.line_device import Device
from tests.support.peers.sms_providers import AliyunPeer
from tests.support.services import free_port, wait_until
from tests.support.sms_config import KEY_ID, SECRET, sms_config


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
    from tests.support.peers.sms_providers import aliyun_error

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
