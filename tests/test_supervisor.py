"""hub.supervisor on a task.Clock: crash → log with traceback, counter, fault event,
on_crash, restart after a jittered exponential backoff; a run that stays up resets the backoff
and clears the fault; stop() is no crash; a thread that dies reaches the reactor as a crash."""

from __future__ import annotations

import threading

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from hub.metrics import Metrics
from hub.model import EventState
from hub.supervisor import Supervisor, run_in_thread


@pytest.fixture
def logged():
    """Every log line emitted during the test, each with its failure's traceback if any."""
    from twisted.logger import formatEvent, globalLogPublisher

    lines: list[str] = []

    def observe(event):
        failure = event.get("log_failure")
        lines.append(formatEvent(event) + ("\n" + failure.getTraceback() if failure else ""))

    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


class Host:
    def __init__(self) -> None:
        self.clock = Clock()
        self.metrics = Metrics()
        self.events: list = []

    def record_events(self, events):
        self.events.extend(events)
        return defer.succeed(None)


class Job:
    """A job whose runs the test ends by hand."""

    def __init__(self) -> None:
        self.runs: list[defer.Deferred] = []

    def __call__(self) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.runs.append(d)
        return d

    def crash(self, message: str = "boom") -> None:
        try:
            raise ValueError(message)
        except ValueError:
            self.runs[-1].errback()


def make(rng=lambda: 1.0, **kwargs):
    host, job, crashes = Host(), Job(), []
    sup = Supervisor(host, "thing", "thing-1", job, labels={"transport": "t"},
                     on_crash=crashes.append, initial=1.0, maximum=8.0, stable_after=30.0,
                     rng=rng, **kwargs)
    return host, job, crashes, sup


def test_crashes_back_off_exponentially_and_a_stable_run_resets_the_backoff(logged):
    host, job, crashes, sup = make()
    sup.start()
    assert len(job.runs) == 1
    delays = []
    for n in range(1, 6):
        job.crash(f"boom {n}")
        before = len(job.runs)
        waited = 0.0
        while len(job.runs) == before:
            host.clock.advance(0.25)
            waited += 0.25
        delays.append(waited)
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]  # rng 1.0: the top of each jitter range
    assert host.metrics.value("thing.crashes", transport="t") == 5
    assert len(crashes) == 5 and crashes[0].getErrorMessage() == "boom 1"
    raised = [e for e in host.events if e.state is EventState.RAISED]
    assert len(raised) == 1 and raised[0].code == "component_crashed"
    assert raised[0].device == "hub" and "thing-1: crashed (ValueError: boom 1)" in \
        raised[0].message
    text = "\n".join(logged)
    assert "thing-1: crashed (ValueError: boom 1); restarting in 1.00 s" in text
    assert "Traceback" in text and "ValueError: boom 5" in text
    # up for less than stable_after: still faulted; then healthy: cleared, backoff reset
    host.clock.advance(29)
    assert sup.faulted
    host.clock.advance(1)
    assert not sup.faulted
    cleared = [e for e in host.events if e.state is EventState.CLEARED]
    assert len(cleared) == 1 and cleared[0].id == raised[0].id
    assert cleared[0].raised_ts == raised[0].ts
    job.crash()
    host.clock.advance(0.99)
    assert len(job.runs) == 6
    host.clock.advance(0.01)
    assert len(job.runs) == 7  # back at initial
    assert len([e for e in host.events if e.state is EventState.RAISED]) == 2


def test_jitter_draws_from_half_to_all_of_the_backoff():
    host, job, _, sup = make(rng=lambda: 0.0)
    sup.start()
    job.crash()
    host.clock.advance(0.49)
    assert len(job.runs) == 1
    host.clock.advance(0.01)
    assert len(job.runs) == 2


def test_an_end_without_an_error_is_a_crash_and_so_is_failing_to_start():
    host, job, _, sup = make()
    sup.start()
    job.runs[-1].callback("done")
    assert sup.crashes == 1 and "ended by itself" in host.events[0].message
    host.clock.advance(1)
    assert len(job.runs) == 2

    calls = []

    def broken():
        calls.append(1)
        raise OSError("cannot start")

    host2 = Host()
    sup2 = Supervisor(host2, "x", "x", broken, initial=1, rng=lambda: 1.0)
    sup2.start()
    host2.clock.advance(1)
    host2.clock.advance(2)
    assert len(calls) == 3 and sup2.crashes == 3
    assert host2.metrics.value("x.crashes") == 3


def test_stop_is_no_crash_and_cancels_a_pending_restart():
    host, job, crashes, sup = make()
    sup.start()
    stopped = sup.stop()
    assert not stopped.called
    job.runs[-1].callback(None)
    assert stopped.called and sup.crashes == 0 and not host.events
    sup.start()
    job.crash()
    assert sup.stop().called  # nothing running: at once
    host.clock.advance(100)
    assert len(job.runs) == 2 and len(crashes) == 1
    assert not host.clock.getDelayedCalls()


def test_an_on_crash_that_raises_does_not_stop_the_restart(logged):
    host, job = Host(), Job()

    def bad_cleanup(failure):
        raise RuntimeError("cleanup failed")

    sup = Supervisor(host, "y", "y", job, on_crash=bad_cleanup, initial=1, rng=lambda: 1.0)
    sup.start()
    job.crash()
    host.clock.advance(1)
    assert len(job.runs) == 2
    assert any("error cleaning up after the crash" in line for line in logged)


class ThreadReactor:
    """callFromThread into a list the test thread runs: the thread's end in 'the reactor'."""

    def __init__(self) -> None:
        self.calls: list = []
        self.event = threading.Event()

    def callFromThread(self, fn, *args):
        self.calls.append((fn, args))
        self.event.set()


@pytest.mark.parametrize("fail", [False, True])
def test_run_in_thread_reports_the_end_of_the_thread(fail):
    reactor = ThreadReactor()

    def loop():
        if fail:
            raise KeyError("in the thread")
        return 7

    d = run_in_thread(reactor, loop, "test-loop")
    assert reactor.event.wait(10)
    for fn, args in reactor.calls:
        fn(*args)
    results = []
    d.addBoth(results.append)
    if fail:
        assert results[0].check(KeyError) and "in the thread" in results[0].getTraceback()
        assert "loop" in results[0].getTraceback()
    else:
        assert results == [7]
