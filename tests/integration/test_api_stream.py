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


def read_events(client, n, timeout=60.0, kinds=("event", "end"), **params):
    """The first ``n`` SSE events of ``kinds`` of a stream (each as {"id", "event",
    "data"}), or fewer if it ends."""
    out, current = [], {}
    with client.stream("GET", "/api/events/stream", params=params, timeout=timeout) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if not line:
                if current.get("event") in kinds:
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


ALL = ("event", "end", "command_result", "reading")


def test_command_results_are_in_the_stream_and_readings_on_request(api):
    with api.client(api.login("op1")) as op:
        r = op.post("/api/devices/efd-1/commands", json={"action": "reset", "wait": True})
        assert r.status_code == 202 and r.json()["status"] == "succeeded", r.text
        cid = r.json()["id"]
        # from the journal (after=0): the command's results, no readings unless asked
        past = read_events(op, 1000, kinds=ALL, after=0, device="efd-1", idle_timeout=1.5)
        results = [json.loads(e["data"]) for e in past if e["event"] == "command_result"]
        assert [x["status"] for x in results if x["command_id"] == cid][-1] == "succeeded"
        assert not [e for e in past if e["event"] == "reading"]
        # readings of one device, on request, live
        live = read_events(op, 5, kinds=ALL, readings=True, device="d1")
        readings = [json.loads(e["data"]) for e in live if e["event"] == "reading"]
        assert readings and {x["device"] for x in readings} == {"d1"}
        assert all("quantity" in x and "value" in x for x in readings)
        seqs = [int(e["id"]) for e in live]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        # resumed after the first: the same records come back, in order, none twice
        again = read_events(op, 4, kinds=ALL, readings=True, device="d1", after=seqs[0])
        assert [int(e["id"]) for e in again] == seqs[1:]
    with api.client(api.login("view2")) as other:
        foreign = read_events(other, 3, kinds=ALL, readings=True, device="d1",
                              idle_timeout=1.5)
        assert foreign == []  # d1 is not view2's: nothing, not even its readings
