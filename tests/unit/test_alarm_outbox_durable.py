"""The outbox's durable retries: every attempt and its answer is a row of its own, the next
try's time is stored, and after a restart the attempt count carries on, so the bound on
attempts holds across restarts; a claimed notification is never claimed twice."""

from __future__ import annotations

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from hub.alarmdesk.channels import Outbox, idempotency_key
from hub.alarmdesk.policy import Notification
from hub.alarmdesk.settings import NotifySettings
from hub.store import SqliteStore

SETTINGS = NotifySettings(retry_initial=10.0, retry_max=40.0, attempts=3)
NOTE = Notification(7, 1, "hook", "duty", "alarm", "d1 temperature")


class Down:
    def __init__(self, answers):
        self.answers = list(answers)
        self.sent = []

    def send(self, n):
        self.sent.append(n)
        a = self.answers.pop(0)
        return defer.fail(a) if isinstance(a, Exception) else defer.succeed(a)


@pytest.fixture
def store(tmp_path):
    s = SqliteStore(str(tmp_path / "p.sqlite"))
    s.open()
    yield s
    s.close()


def test_attempts_are_recorded_and_carried_over_a_restart(store):
    clock = Clock()
    clock.advance(1000)
    first = Down([RuntimeError("HTTP 503")])
    box = Outbox(clock, store, {"hook": first}, SETTINGS)
    assert box.claim([NOTE], clock.seconds()) == [True]
    box.deliver(NOTE)
    [row] = store.notifications(7)
    state = store.notify_retry_state()[row["id"]]
    assert state[0] == 1 and 1000 < state[1] <= 1010  # the next try is stored
    box.stop()  # killed while waiting
    clock.advance(5)
    second = Down([RuntimeError("timeout"), RuntimeError("HTTP 502")])
    box2 = Outbox(clock, store, {"hook": second}, SETTINGS)
    assert box2.claim([NOTE], clock.seconds()) == [False]  # claimed before the stop
    box2.resume()
    clock.advance(40)
    # attempts 2 and 3 after the restart: the bound (3) holds across it
    assert len(second.sent) == 2
    [row] = store.notifications(7)
    assert (row["status"], row["attempts"]) == ("failed", 3)
    log = store.notify_attempts(row["id"])
    assert [(a["attempt"], a["outcome"], a["answer"]) for a in log] == [
        (1, "error", "HTTP 503"), (2, "error", "timeout"), (3, "failed", "HTTP 502")]
    assert row["answer"] == "#1 HTTP 503; #2 timeout; #3 HTTP 502"
    assert store.notify_retry_state() == {}


def test_the_idempotency_key_is_the_same_for_every_attempt_and_per_subject():
    assert idempotency_key(NOTE) == "alarm-7-1-duty"
    reminder = Notification(-4, -2, "hook", "duty", "hazard", "x", "p1", (), 4)
    assert idempotency_key(reminder) == "hazard-4--2-duty"


def test_a_storms_answers_are_written_together_not_one_commit_each(store):
    """Answers arriving in one reactor turn are one transaction: the storm's thousand
    answers were two commits each, on the reactor, delaying the requests still to go."""
    clock = Clock()
    pending = []

    class Later:
        def send(self, n):
            d = defer.Deferred()
            pending.append(d)
            return d

    writes = []
    real = store.notify_settle

    def counted(settled):
        writes.append(len(settled))
        real(settled)

    store.notify_settle = counted
    box = Outbox(clock, store, {"hook": Later()}, SETTINGS)
    notes = [Notification(100 + i, 0, "hook", "duty", "alarm", f"d{i}") for i in range(50)]
    assert box.claim(notes, clock.seconds()) == [True] * 50
    for n in notes:
        box.deliver(n)
    for i, d in enumerate(pending):
        d.callback(f"200 ok {i}") if i % 10 else d.errback(RuntimeError("HTTP 503"))
    assert writes == []  # not yet: at the end of the turn
    clock.advance(0)
    assert writes == [50]
    rows = [store.notifications(100 + i)[0] for i in range(50)]
    assert [r["status"] for r in rows].count("sent") == 45
    assert [(r["status"], r["attempts"]) for r in rows[::10]] == [("pending", 1)] * 5
    assert store.notify_attempts(rows[1]["id"])[0]["answer"] == "200 ok 1"


def test_a_webhook_to_an_address_connects_without_a_name_look_up():
    """An IP address in the webhook's URL is connected as it is; a name still goes through
    the resolver (which the reactor's thread pool serves)."""
    from twisted.internet.testing import MemoryReactorClock

    from hub.alarmdesk.channels import WebhookChannel
    from hub.alarmdesk.settings import ChannelSettings

    reactor = MemoryReactorClock()
    hook = WebhookChannel(ChannelSettings("hook", "webhook", url="http://127.0.0.1:8123/h",
                                          secret="s3cret-value"), reactor)
    hook.send(NOTE)
    assert [c[:2] for c in reactor.tcpClients] == [("127.0.0.1", 8123)]
    # and its connections start without an info line each ("Starting factory")
    from twisted.logger import globalLogPublisher

    logged = []
    globalLogPublisher.addObserver(logged.append)
    try:
        reactor.tcpClients[0][2].doStart()
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert [e.get("log_format") for e in logged if "factory" in str(e.get("log_format"))] \
        == []
    looked_up = []

    class Resolver:
        def resolveHostName(self, receiver, hostName, portNumber=0, **kw):
            looked_up.append(hostName)
            receiver.resolutionBegan(None)
            return receiver

    reactor.nameResolver = Resolver()
    named = WebhookChannel(ChannelSettings("hook", "webhook", url="http://hooks.example:8123/h",
                                           secret="s3cret-value"), reactor)
    named.send(NOTE)
    assert looked_up == ["hooks.example"] and len(reactor.tcpClients) == 1
