"""The outbox on task.Clock: a channel that is down is retried with backoff, each attempt's
answer is recorded, a permanent refusal ends at once, and what was pending at a stop is
sent at the next start (the store's pending rows are the durable cursor)."""

from __future__ import annotations

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from hub.alarmdesk.channels import Outbox, Permanent
from hub.alarmdesk.policy import Notification
from hub.alarmdesk.settings import NotifySettings


class Flaky:
    """Fails with the given errors in turn, then answers ok."""

    def __init__(self, *errors):
        self.errors = list(errors)
        self.sent = []

    def send(self, n):
        self.sent.append(n)
        if self.errors:
            return defer.fail(self.errors.pop(0))
        return defer.succeed(f"ok {len(self.sent)}")


@pytest.fixture
def store(make_store):
    """The platform store on each backend (SQLite, PostgreSQL: tests/support/postgres.py)."""
    return make_store()


NOTE = Notification(7, 0, "sms", "13800138000", "alarm", "d1 temperature")
SETTINGS = NotifySettings(retry_initial=1.0, retry_max=4.0, attempts=4)


def outbox(store, channel, clock=None):
    clock = clock or Clock()
    return clock, Outbox(clock, store, {"sms": channel}, SETTINGS)


def test_retried_with_backoff_until_it_goes_through(store):
    channel = Flaky(RuntimeError("HTTP 503"), RuntimeError("timeout"))
    clock, box = outbox(store, channel)
    assert box.claim([NOTE], 0.0) == [True]
    assert box.claim([NOTE], 0.0) == [False]  # never twice
    box.deliver(NOTE)
    assert len(channel.sent) == 1
    [row] = store.notifications(7)
    assert (row["status"], row["attempts"]) == ("pending", 1) and "503" in row["answer"]
    clock.advance(1.0)  # the first delay is at most retry_initial
    clock.advance(2.0)
    assert len(channel.sent) == 3
    [row] = store.notifications(7)
    assert (row["status"], row["attempts"]) == ("sent", 3)
    assert row["answer"] == "#1 HTTP 503; #2 timeout; #3 ok 3"


def test_a_permanent_refusal_ends_at_once_and_attempts_are_bounded(store):
    refused = Flaky(Permanent("isv.MOBILE_NUMBER_ILLEGAL"))
    _, box = outbox(store, refused)
    box.claim([NOTE], 0.0)
    box.deliver(NOTE)
    [row] = store.notifications(7)
    assert (row["status"], row["attempts"]) == ("failed", 1)
    down = Flaky(*[RuntimeError("down")] * 10)
    clock, box = outbox(store, down)
    other = Notification(8, 0, "sms", "13800138000", "alarm", "x")
    box.claim([other], 0.0)
    box.deliver(other)
    clock.pump([4.0] * 10)
    assert len(down.sent) == SETTINGS.attempts
    assert store.notifications(8)[0]["status"] == "failed"


def test_pending_sends_resume_after_a_stop(store):
    channel = Flaky(RuntimeError("down"))
    clock, box = outbox(store, channel)
    box.claim([NOTE], 0.0)
    box.deliver(NOTE)
    box.stop()  # the hub stops while the retry waits
    clock.advance(100)
    assert len(channel.sent) == 1
    again = Flaky()
    _, box2 = outbox(store, again)
    box2.resume()
    assert [n.recipient for n in again.sent] == ["13800138000"]
    assert store.notifications(7)[0]["status"] == "sent"
    assert store.notify_pending() == []
