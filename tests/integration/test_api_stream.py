"""The live event stream (SSE): events of the caller's devices as they are committed, and a
reconnect with Last-Event-ID (or ``after``) that misses nothing and repeats nothing."""

from __future__ import annotations

import json

import pytest

from tests.support.api_hub import populated_hub


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with populated_hub(tmp_path_factory.mktemp("stream")) as hub:
        yield hub


def read_events(client, n, timeout=60.0, **params):
    """The first ``n`` SSE events of a stream (each as {"id", "event", "data"}), or fewer
    if it ends."""
    out, current = [], {}
    with client.stream("GET", "/api/events/stream", params=params, timeout=timeout) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if not line:
                if current.get("event") in ("event", "end"):
                    out.append(current)
                    if len(out) >= n:
                        break
                current = {}
                continue
            key, _, value = line.partition(":")
            current[key] = value.strip()
    return out


def test_stream_and_resume(api):
    with api.client(api.login("op1")) as op:
        live = read_events(op, 3)
        assert [e["event"] for e in live] == ["event"] * 3
        events = [json.loads(e["data"]) for e in live]
        assert {e["device"] for e in events} <= {"d1", "efd-1"}
        seqs = [int(e["id"]) for e in live]
        assert seqs == sorted(seqs) and [e["seq"] for e in events] == seqs
        # resume after the first: the second and third come back first, from the journal
        again = read_events(op, 2, after=seqs[0])
        assert [int(e["id"]) for e in again] == seqs[1:]
        headers = {"Last-Event-ID": str(seqs[1])}
        op.headers.update(headers)
        third = read_events(op, 1)
        assert [int(e["id"]) for e in third] == seqs[2:]


def test_stream_shows_only_the_callers_devices(api):
    with api.client(api.login("view2")) as other:
        seen = read_events(other, 100, after=0, idle_timeout=1.5)
        assert all(json.loads(e["data"])["device"] == "d2" for e in seen if e["event"] ==
                   "event")
    with api.client(api.login("op1")) as op:
        mine = read_events(op, 2, after=0, device="d1", kind="alarm")
        assert {json.loads(e["data"])["device"] for e in mine} == {"d1"}
        assert {json.loads(e["data"])["kind"] for e in mine} == {"alarm"}
