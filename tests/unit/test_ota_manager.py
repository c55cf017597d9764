"""Campaign waves on task.Clock with a fake firmware driver: canary first, the failure
bound pauses, resume and cancel, and a restart of the hub picks devices up without
flashing one twice."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from twisted.internet import defer, task

from hub.ota.machine import Limits
from hub.ota.manager import CampaignError, OtaManager
from hub.ota.settings import OtaSettings
from hub.store import SqliteStore


class Driver:
    def __init__(self):
        self.steps = {}  # device -> (update, step)
        self.updates = {}
        self.published = []

    def publish(self, sha256, image):
        self.published.append(sha256)
        return f"coap://h/fw/{sha256[:16]}"

    def attach(self, device, update):
        self.updates[device] = update

    def perform(self, device, update, step):
        self.steps[device] = (update, step)

    def detach(self, device):
        self.steps.pop(device, None)

    def answer(self, device, outcome="ok", value=None):
        update, step = self.steps.pop(device)
        update.step_done(step.id, outcome, value)
        return step.kind

    def succeed(self, device, old="1.0.0", new="2.0.0"):
        assert self.answer(device, value=old) == "read_version"
        if old == new:
            return
        assert self.answer(device) == "reset"
        assert self.answer(device) == "write_uri"
        update = self.updates[device]
        update.reported(state=2)
        assert self.answer(device) == "execute"
        update.reported(result=1)
        assert self.answer(device, value=new) == "read_version"

    def reject(self, device, code=5):
        self.answer(device, value="1.0.0")
        self.answer(device)
        self.answer(device)
        self.updates[device].reported(result=code)


class Audit:
    def __init__(self):
        self.acts = []

    def record(self, actor, action, subject, details):
        self.acts.append((actor, action))
        return defer.succeed(len(self.acts))


def make(tmp_path, n=10, driver=None, max_active=200):
    clock = task.Clock()
    clock.advance(1_800_000_000)
    devices = {f"d{i:02d}": SimpleNamespace(id=f"d{i:02d}", project="p1", model_name="efd",
                                            transport="nb") for i in range(n)}

    class Registry(dict):
        def __iter__(self):
            return iter(self.values())

        def get(self, key):
            return self[key]

    driver = driver or Driver()
    events = []
    hub = SimpleNamespace(clock=clock, registry=Registry(devices), audit=Audit(),
                          commands=SimpleNamespace(targets={"nb": SimpleNamespace(ota=driver)}),
                          record_events=events.extend)
    store = SqliteStore(str(tmp_path / "platform.sqlite"))
    store.open()
    settings = OtaSettings(limits=Limits(check=100, reset=100, deliver=100, download=100,
                                         update=100, verify=100, poll_after=50),
                           max_active=max_active)
    m = OtaManager(hub, store, settings, str(tmp_path),
                   write=lambda fn, *a: defer.succeed(fn(*a)))
    m.start()
    fw = m.add_firmware("p1", ["efd"], "2.0.0", "auto", "pull", b"image", None, "", "root")
    return m, driver, fw, store, events


def test_canary_then_batches_to_the_end(tmp_path):
    m, drv, fw, store, events = make(tmp_path, n=7)
    c = m.create("p1", fw, "x", canary=2, batch=3, failure_bound=0.5)
    assert sorted(drv.steps) == ["d00", "d01"]  # the canary only
    drv.succeed("d00")
    assert sorted(drv.steps) == ["d01"]  # the next wave waits for the whole canary
    drv.succeed("d01")
    assert sorted(drv.steps) == ["d02", "d03", "d04"]
    for d in ("d02", "d03", "d04"):
        drv.succeed(d)
    for d in ("d05", "d06"):
        drv.succeed(d)
    assert store.campaign(c.id).state == "finished"
    assert m.progress(c.id) == {"succeeded": 7}
    m.flush()
    assert store.device_versions()["d03"] == "2.0.0"  # what it reported last
    assert {e.code for e in events} == {"ota_started", "ota_succeeded"}
    assert ("hub", "ota.campaign.finished") in m.hub.audit.acts
    hist = store.ota_history(c.id, "d00")
    assert [h["phase"] for h in hist][-1] == "succeeded"


def test_a_wave_is_admitted_max_active_devices_at_a_time(tmp_path):
    m, drv, fw, store, events = make(tmp_path, n=7, max_active=2)
    c = m.create("p1", fw, "x", canary=0, batch=5, failure_bound=0.5)
    assert sorted(drv.steps) == ["d00", "d01"]
    drv.succeed("d00")
    assert sorted(drv.steps) == ["d01", "d02"]  # one ended, the next went in
    drv.reject("d01")  # a failure frees its place too (1 of 5: within the bound)
    assert sorted(drv.steps) == ["d02", "d03"]
    m.pause(c.id)
    drv.succeed("d02")
    assert sorted(drv.steps) == ["d03"]  # paused: nobody new
    m.resume(c.id)
    assert sorted(drv.steps) == ["d03", "d04"]
    for d in ("d03", "d04"):
        drv.succeed(d)
    assert sorted(drv.steps) == ["d05", "d06"]  # the next wave, two at a time as well
    drv.succeed("d05")
    drv.succeed("d06")
    assert store.campaign(c.id).state == "finished"
    assert m.progress(c.id) == {"succeeded": 6, "failed": 1}
    assert sum(e.code == "ota_started" for e in events) == 7  # each started once


def test_the_failure_bound_pauses_and_resume_goes_on(tmp_path):
    m, drv, fw, store, events = make(tmp_path, n=6)
    c = m.create("p1", fw, "x", canary=2, batch=2, failure_bound=0.4)
    drv.reject("d00")
    assert store.campaign(c.id).state == "paused"  # 1 of 2 failed: 50 % > 40 %
    assert "above the bound" in store.campaign(c.id).reason
    drv.succeed("d01")  # a device under way finishes
    assert not drv.steps  # but no wave starts
    with pytest.raises(CampaignError):
        m.pause(c.id)
    m.resume(c.id)
    assert sorted(drv.steps) == ["d02", "d03"]
    drv.succeed("d02")
    drv.succeed("d03")
    drv.succeed("d04")
    drv.succeed("d05")
    assert store.campaign(c.id).state == "finished"
    assert m.progress(c.id) == {"failed": 1, "succeeded": 5}
    assert any(e.code == "ota_failed" for e in events)


def test_cancel_ends_queued_and_running_devices(tmp_path):
    m, drv, fw, store, _ = make(tmp_path, n=4)
    c = m.create("p1", fw, "x", canary=1, batch=3)
    m.cancel(c.id)
    assert m.progress(c.id) == {"cancelled": 4}
    assert store.campaign(c.id).state == "cancelled"
    with pytest.raises(CampaignError):
        m.resume(c.id)


def test_selection_exact_versions_and_one_campaign_per_device(tmp_path):
    m, drv, fw, store, _ = make(tmp_path, n=3)
    store.ota_record([])
    c = m.create("p1", fw, "x", devices=["d00"], canary=1)
    drv.succeed("d00", old="2.0.0", new="2.0.0")  # already there: nothing flashed
    m.flush()
    assert store.campaign_devices(c.id)[0].flashed is False
    c2 = m.create("p1", fw, "y", canary=1, batch=5)
    assert [d.device for d in store.campaign_devices(c2.id)] == ["d01", "d02"]
    with pytest.raises(CampaignError, match="no device"):
        m.create("p1", fw, "z", devices=["d01"])  # busy in c2
    with pytest.raises(CampaignError, match="from_versions"):
        m.create("p1", fw, "z", from_versions=["1..1"])


def test_a_restart_verifies_a_flashed_device_instead_of_flashing_again(tmp_path):
    m, drv, fw, store, _ = make(tmp_path, n=2)
    c = m.create("p1", fw, "x", canary=0, batch=2)
    for d in ("d00", "d01"):
        drv.answer(d, value="1.0.0")
        drv.answer(d)
        drv.answer(d)
    drv.updates["d00"].reported(state=2)  # d00 got its Execute; d01 still downloads
    assert drv.steps["d00"][1].kind == "execute"
    m.stop()
    drv2 = Driver()
    m.hub.commands.targets["nb"].ota = drv2
    m2 = OtaManager(m.hub, store, m.settings, str(tmp_path),
                    write=lambda fn, *a: defer.succeed(fn(*a)))
    m2.start()
    assert drv2.steps["d00"][1].kind == "read_version"  # verify only
    assert drv2.steps["d01"][1].kind == "read_version"  # check, then deliver again
    drv2.answer("d00", value="2.0.0")
    drv2.succeed("d01")
    assert store.campaign(c.id).state == "finished"
    m2.flush()
    kinds = [h["phase"] for h in store.ota_history(c.id, "d00")]
    assert kinds.count("updating") == 1 and kinds[-1] == "succeeded"
