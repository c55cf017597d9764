"""The per-device firmware update machine, on task.Clock: every phase, its deadline, its
retries, and the rule that the Execute is never sent twice."""

from __future__ import annotations

import pytest
from twisted.internet import task

from hub.ota.machine import RESULTS, DeviceUpdate, Limits, Phase

LIMITS = Limits(check=100, reset=100, deliver=200, download=300, update=400, verify=100,
                poll_after=50, tries=2, attempts=2)


class Rig:
    def __init__(self, method="pull", **kw):
        self.clock = task.Clock()
        self.steps = []
        self.phases = []
        self.u = DeviceUpdate("d1", "1.1.10", method, self.clock, self.steps.append,
                              lambda u, before, detail: self.phases.append((before, u.phase)),
                              uri="coap://h/fw/x" if method == "pull" else "",
                              limits=LIMITS, **kw)

    @property
    def step(self):
        return self.steps[-1]

    def kinds(self):
        return [s.kind for s in self.steps]

    def ok(self, value=None):
        self.u.step_done(self.step.id, "ok", value)

    def to_downloading(self, version="1.1.1"):
        self.u.start()
        self.ok(version)
        assert self.u.phase is Phase.RESETTING
        self.ok()
        assert self.u.phase is Phase.DELIVERING
        self.ok()
        assert self.u.phase is Phase.DOWNLOADING

    def to_updating(self):
        self.to_downloading()
        self.u.reported(state=1)
        self.u.reported(state=2)
        assert self.u.phase is Phase.UPDATING


def test_pull_happy_path():
    r = Rig()
    r.to_updating()
    assert r.kinds() == ["read_version", "reset", "write_uri", "execute"]
    assert r.steps[2].value == "coap://h/fw/x"
    r.ok()  # the Execute was answered
    r.u.reported(state=3)
    r.u.reported(result=1)
    assert r.u.phase is Phase.VERIFYING and r.step.kind == "read_version"
    r.ok("1.1.10")
    assert r.u.phase is Phase.SUCCEEDED and r.u.flashed
    assert [p for _, p in r.phases] == [Phase.CHECKING, Phase.RESETTING, Phase.DELIVERING,
                                        Phase.DOWNLOADING, Phase.UPDATING, Phase.VERIFYING,
                                        Phase.SUCCEEDED]
    assert not r.clock.getDelayedCalls()  # nothing left ticking


def test_push_writes_the_package():
    r = Rig("push")
    r.to_downloading()
    assert r.kinds() == ["read_version", "reset", "push"]
    r.u.reported(state=2)
    assert r.kinds()[-1] == "execute"


def test_already_at_the_target_is_not_flashed():
    r = Rig()
    r.u.start()
    r.ok("1.1.10")
    assert r.u.phase is Phase.SUCCEEDED and not r.u.flashed
    assert r.kinds() == ["read_version"]


def test_1_1_1_is_not_1_1_10():
    r = Rig()
    r.u.start()
    r.ok("1.1.1")
    assert r.u.phase is Phase.RESETTING


@pytest.mark.parametrize("phase,limit", [("checking", 100), ("resetting", 100),
                                         ("verifying", 100)])
def test_each_step_phase_times_out(phase, limit):
    r = Rig()
    r.u.start()
    if phase in ("resetting",):
        r.ok("1.0")
    if phase == "verifying":
        r.to_updating_from_checking = None
        r.ok("1.0")
        r.ok()
        r.ok()
        r.u.reported(state=2)
        r.ok()
        r.u.reported(result=1)
    assert r.u.phase.value == phase
    r.clock.advance(limit - 1)
    assert r.u.phase.value == phase
    r.clock.advance(1)
    assert r.u.phase is Phase.TIMED_OUT
    assert phase in r.u.detail


def test_a_silent_step_is_sent_tries_times_then_times_out():
    r = Rig()
    r.u.start()
    r.u.step_done(r.step.id, "timed_out")
    assert r.kinds() == ["read_version", "read_version"]
    r.u.step_done(r.step.id, "timed_out")
    assert r.u.phase is Phase.TIMED_OUT and len(r.steps) == 2
    assert "2 sends" in r.u.detail


def test_step_ttl_is_what_is_left_of_the_phase():
    r = Rig()
    r.u.start()
    assert r.step.ttl == 100
    r.clock.advance(30)
    r.u.step_done(r.step.id, "timed_out")
    assert r.step.ttl == pytest.approx(70)


def test_stale_answers_are_ignored():
    r = Rig()
    r.u.start()
    first = r.step.id
    r.u.step_done(first, "timed_out")
    r.u.step_done(first, "ok", "1.1.10")  # the old step's late answer
    assert r.u.phase is Phase.CHECKING


def test_a_refusal_fails_with_what_the_device_said():
    r = Rig()
    r.u.start()
    r.u.step_done(r.step.id, "failed", detail="4.04 Not Found")
    assert r.u.phase is Phase.FAILED and "4.04" in r.u.detail


def test_delivering_times_out():
    r = Rig()
    r.u.start()
    r.ok("1.0")
    r.ok()
    assert r.u.phase is Phase.DELIVERING
    r.clock.advance(200)
    assert r.u.phase is Phase.TIMED_OUT


def test_push_timeout_retries_after_a_reset_then_gives_up():
    r = Rig("push")
    r.u.start()
    r.ok("1.0")
    r.ok()
    assert r.u.phase is Phase.DELIVERING and r.u.attempt == 1
    r.clock.advance(200)  # the whole push took too long: a new delivery, reset first
    assert r.u.phase is Phase.RESETTING and r.u.attempt == 2 and r.step.kind == "reset"
    r.ok()
    r.clock.advance(200)
    assert r.u.phase is Phase.TIMED_OUT and "2 deliveries" in r.u.detail


def test_downloading_polls_then_retries_then_times_out():
    r = Rig()
    r.to_downloading()
    r.clock.advance(50)
    assert r.step.kind == "read_status"
    r.ok((1, 0))  # still downloading
    assert r.u.phase is Phase.DOWNLOADING
    r.clock.advance(250)  # the download deadline (300)
    assert r.u.phase is Phase.RESETTING and r.u.attempt == 2
    r.ok()
    r.ok()
    r.clock.advance(300)
    assert r.u.phase is Phase.TIMED_OUT


def test_a_poll_can_find_the_download_done():
    r = Rig()
    r.to_downloading()
    r.clock.advance(50)
    r.ok((2, 0))
    assert r.u.phase is Phase.UPDATING and r.step.kind == "execute"


def test_connection_lost_is_retried_with_a_reset_before():
    r = Rig()
    r.to_downloading()
    r.u.reported(result=4)
    assert r.u.phase is Phase.RESETTING and r.step.kind == "reset" and r.u.attempt == 2
    r.ok()
    r.ok()
    r.u.reported(result=4)
    assert r.u.phase is Phase.FAILED and r.u.result_code == 4


@pytest.mark.parametrize("code", [2, 3, 5, 6, 7, 9, 10, 11, 42])
def test_every_download_result_code_fails_with_it(code):
    r = Rig()
    r.to_downloading()
    r.u.reported(result=code)
    assert r.u.phase is Phase.FAILED and r.u.result_code == code
    assert RESULTS.get(code, f"result code {code}") in r.u.detail


def test_update_failure_result_8():
    r = Rig()
    r.to_updating()
    r.ok()
    r.u.reported(result=8)
    assert r.u.phase is Phase.FAILED and r.u.result_code == 8


def test_the_execute_is_never_sent_twice():
    r = Rig()
    r.to_updating()
    r.u.step_done(r.step.id, "timed_out")  # the device rebooted before answering
    assert r.u.phase is Phase.UPDATING
    r.clock.advance(50)
    assert r.step.kind == "read_status"
    r.u.step_done(r.step.id, "timed_out")
    r.clock.advance(400)  # silent through the update deadline: verify, do not flash again
    assert r.u.phase is Phase.VERIFYING
    r.ok("1.1.1")
    assert r.u.phase is Phase.FAILED and "not 1.1.10" in r.u.detail
    assert r.kinds().count("execute") == 1


def test_updating_deadline_then_verified_success():
    r = Rig()
    r.to_updating()
    r.ok()
    r.clock.advance(400)
    r.ok("1.1.10")
    assert r.u.phase is Phase.SUCCEEDED


def test_cancel_before_and_after_the_execute():
    r = Rig()
    r.to_downloading()
    r.u.cancel()
    assert r.u.phase is Phase.CANCELLED and r.step.kind == "reset"
    assert not r.clock.getDelayedCalls()
    r2 = Rig()
    r2.to_updating()
    r2.u.cancel("stop")
    assert r2.u.phase is Phase.CANCELLED and "may still complete" in r2.u.detail
    r2.u.reported(result=1)  # late news changes nothing
    assert r2.u.phase is Phase.CANCELLED


def test_never_an_endless_loop():
    # a device that loses the connection on every delivery ends after `attempts`
    r = Rig()
    r.to_downloading()
    for _ in range(10):
        if r.u.final:
            break
        r.u.reported(result=4)
        if r.u.phase is Phase.RESETTING:
            r.ok()
            r.ok()
    assert r.u.phase is Phase.FAILED and r.u.attempt == LIMITS.attempts
    assert r.kinds().count("reset") == LIMITS.attempts


def test_limits_must_be_positive():
    with pytest.raises(ValueError):
        Limits(check=0)
    with pytest.raises(ValueError):
        Limits(attempts=0)


def test_a_refused_repeat_of_the_uri_write_finds_the_download_going():
    r = Rig()
    r.u.start()
    r.ok("1.0")
    r.ok()
    r.u.step_done(r.step.id, "failed", detail="4.05 Method Not Allowed")
    assert r.u.phase is Phase.DELIVERING and r.step.kind == "read_status"
    r.ok((1, 0))
    assert r.u.phase is Phase.DOWNLOADING
    r2 = Rig()
    r2.u.start()
    r2.ok("1.0")
    r2.ok()
    r2.u.step_done(r2.step.id, "failed", detail="4.05 Method Not Allowed")
    r2.ok((0, 0))  # idle: it really refused
    assert r2.u.phase is Phase.FAILED and "4.05" in r2.u.detail
