"""What keeps the API cheap on the loop it shares with ingest, without HTTP: callers cached
by token (and forgotten on any change), the guard telling of changing requests, the live
feed's per-subscriber filter and its frames encoded once, the loop-lag probe."""

from __future__ import annotations

import asyncio

from hub.api.context import PrincipalCache
from hub.api.guard import Guard
from hub.api.service import probe_loop_lag
from hub.api.stream import FANOUT_SLICE, MAX_QUEUE, Subscriber, frame
from hub.model import Event, EventKind, EventState, Reading


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_cached_caller_lasts_its_ttl_and_no_longer_than_its_session():
    mono, wall = Clock(), Clock()
    cache = PrincipalCache(clock=mono, wall=wall, ttl=2.0)
    cache.put("a", "alice", expires=wall.now + 60, generation=cache.generation)
    cache.put("b", "bob", expires=wall.now + 1, generation=cache.generation)
    assert (cache.get("a"), cache.get("b")) == ("alice", "bob")
    wall.now += 1  # bob's session ends before the TTL does
    assert (cache.get("a"), cache.get("b")) == ("alice", None)
    mono.now += 2
    assert cache.get("a") is None


def test_any_change_forgets_every_caller_and_a_lookup_begun_before_it_is_not_kept():
    cache = PrincipalCache(clock=Clock(), wall=Clock())
    cache.put("a", "alice", expires=float("inf"), generation=cache.generation)
    begun = cache.generation  # a lookup starts on a worker thread ...
    cache.changed()  # ... a logout commits meanwhile
    assert cache.get("a") is None
    cache.put("a", "alice", expires=float("inf"), generation=begun)
    assert cache.get("a") is None
    cache.put("a", "alice", expires=float("inf"), generation=cache.generation)
    assert cache.get("a") == "alice"


def test_the_guard_tells_of_every_request_but_safe_ones():
    changed = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    guard = Guard(app, 1024, changed=lambda: changed.append(True))

    async def run(method: str) -> None:
        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            pass

        await guard({"type": "http", "method": method, "headers": []}, receive, send)

    for method in ("GET", "HEAD", "OPTIONS"):
        asyncio.run(run(method))
    assert changed == []
    for method in ("POST", "PATCH", "DELETE", "PUT"):
        asyncio.run(run(method))
    assert len(changed) == 4


def event(device: str, kind: EventKind = EventKind.ALARM) -> Event:
    return Event(device, kind, "temperature", EventState.RAISED, 5.0, id=f"e-{device}")


def test_a_subscriber_queues_only_what_its_filter_keeps():
    async def go():
        sub = Subscriber(keep=lambda r: r.device == "d1")
        e1, e2 = event("d1"), event("d2")
        assert sub.put((1, e1, frame(1, e1))) is True
        assert sub.put((2, e2, frame(2, e2))) is False
        assert sub.queue.qsize() == 1
        assert (await sub.get())[0] == 1

    asyncio.run(go())


def test_a_stuck_subscriber_is_ended_not_grown():
    async def go():
        sub = Subscriber()
        e = event("d1")
        item = (1, e, frame(1, e))
        for _ in range(MAX_QUEUE):
            assert sub.put(item)
        assert sub.put(item) is False and sub.overflowed
        assert sub.put(item) is False  # nothing more after the end marker

    asyncio.run(go())


def test_a_frame_is_one_sse_event_with_the_seq_as_its_id():
    text = frame(42, event("d1")).decode()
    lines = text.split("\r\n")
    assert lines[0] == "id: 42" and lines[1] == "event: event"
    assert lines[2].startswith("data: {") and '"device":"d1"' in lines[2]
    assert text.endswith("\r\n\r\n")
    reading = frame(43, Reading("d1", "temperature", 21.5, 5.0, "T1")).decode()
    assert "event: reading" in reading and '"value":21.5' in reading
    assert FANOUT_SLICE >= 1


def test_the_probe_observes_how_late_the_loop_wakes_it():
    lags: list[float] = []

    async def go():
        three = asyncio.Event()

        def observe(lag: float) -> None:
            lags.append(lag)
            if len(lags) >= 3:
                three.set()

        task = asyncio.ensure_future(probe_loop_lag(observe, interval=0))
        await asyncio.wait_for(three.wait(), 10)
        task.cancel()

    asyncio.run(go())
    assert len(lags) >= 3 and all(lag >= 0 for lag in lags)
