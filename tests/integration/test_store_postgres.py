"""The platform store on a real PostgreSQL shared by two "nodes": claims made once, sessions
revoked everywhere, migrations applied once when nodes start together, a restart of the
database survived without losing a write that was acknowledged; and two hub processes whose
APIs share one PostgreSQL."""

from __future__ import annotations

import re
import tempfile
import threading

import psycopg
import pytest
from twisted.internet.task import Clock

from hub.metrics import Metrics
from hub.model import EventState
from hub.store import Device
from hub.store import sqlite as store_sqlite
from hub.store.health import FAULT_CODE, StoreHealth
from hub.store.postgres import PostgresStore, StoreUnavailable
from tests.support.api_hub import ROOT_PASSWORD, hub_cli, start_api_hub
from tests.support.postgres import PostgresServer
from tests.support.services import wait_until


def _together(n: int, fn) -> list:
    """``fn(i)`` in ``n`` threads released at once; their results (or exceptions)."""
    start = threading.Barrier(n)
    out: list = [None] * n

    def run(i: int) -> None:
        start.wait()
        try:
            out[i] = fn(i)
        except Exception as e:  # noqa: BLE001 - returned for the test to look at
            out[i] = e
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def test_each_notification_is_claimed_once_across_two_nodes(pg_dsn):
    a, b = PostgresStore(pg_dsn, pool=3), PostgresStore(pg_dsn, pool=3)
    a.open()
    b.open()
    try:
        items = [(alarm, step, "sms", f"1380000{r:04d}", {"n": alarm})
                 for alarm in range(1, 21) for step in range(3) for r in range(2)]
        # four claimers (two threads on each node) race for the same 120 attempts, each in
        # its own order so that they overlap
        stores = [a, b, a, b]
        results = _together(4, lambda i: [
            (item[:4], row) for item in (items if i % 2 else items[::-1])
            for row in stores[i].notify_claim([item], 100.0)])
        assert not [r for r in results if isinstance(r, Exception)], results
        claims: dict = {}
        for result in results:
            for key, row in result:
                if row is not None:
                    assert key not in claims, f"{key} claimed twice"
                    claims[key] = row
        assert len(claims) == len(items)
        assert len(a.notify_pending()) == len(items)
    finally:
        a.close()
        b.close()


def test_a_session_revoked_on_one_node_is_revoked_on_the_other(pg_dsn):
    a, b = PostgresStore(pg_dsn), PostgresStore(pg_dsn)
    a.open()
    b.open()
    try:
        u = a.add_user("alice", "h", now=1.0)
        s = a.add_session(u.id, "tok", "ref", 100.0, 200.0, 1.0)
        assert b.session_by_token("tok") == s and not s.revoked
        b.revoke_user_sessions(u.id)
        assert a.session_by_token("tok").revoked and a.session_by_refresh("ref").revoked
        b.update_user(u.id, disabled=True)
        assert a.get_user(u.id).disabled is True
    finally:
        a.close()
        b.close()


def test_nodes_starting_together_migrate_once(pg_dsn, monkeypatch):
    n = store_sqlite.SCHEMA_VERSION
    # a migration that counts its runs: a second run would add a second row
    monkeypatch.setattr(store_sqlite, "MIGRATIONS", [
        *store_sqlite.MIGRATIONS, "CREATE TABLE ran (x INTEGER); INSERT INTO ran VALUES (1);"])
    monkeypatch.setattr(store_sqlite, "SCHEMA_VERSION", n + 1)
    stores = [PostgresStore(pg_dsn) for _ in range(4)]
    results = _together(4, lambda i: stores[i].open())
    try:
        assert results == [None] * 4
        assert {s.schema_version() for s in stores} == {n + 1}
        assert stores[0]._read(lambda db: db.execute("SELECT count(*) FROM ran").fetchone()) \
            == (1,)
        # the platform node of migration 1 once, and ids assigned after it do not collide
        assert [x.id for x in stores[1].nodes()] == [1]
        assert stores[2].add_node(1, "unit", "U").id == 2
    finally:
        for s in stores:
            s.close()


def test_an_alarm_acknowledged_on_two_nodes_at_once_is_acknowledged_once(pg_dsn):
    """Read-modify-write of one record from two nodes at once (what SQLite's single writer
    made safe): eight people acknowledge together, one acknowledgement is recorded, the
    others change nothing."""
    from hub.model import Event, EventKind, Level

    a, b = PostgresStore(pg_dsn), PostgresStore(pg_dsn)
    a.open()
    b.open()
    try:
        ev = Event("d1", EventKind.ALARM, "temperature", EventState.RAISED, 100.0,
                   Level.ALARM, channel="t1", id="e1", value=70.0)
        [(r, _)] = a.ingest([(1, ev)], lambda d: "p1")
        stores = [a, b] * 4
        # every act reads the record, then waits at its UPDATE until all eight have read
        # it: the overlap that loses updates unless the database serializes them
        locker = psycopg.connect(pg_dsn, autocommit=True)
        locker.execute("BEGIN")
        locker.execute("LOCK TABLE alarms IN EXCLUSIVE MODE")
        results: list = []
        threads = [threading.Thread(target=lambda i=i: results.append(stores[i].alarm_act(
            r.id, "acknowledge", f"user{i}", 110.0 + i))) for i in range(8)]
        for t in threads:
            t.start()
        try:
            with psycopg.connect(pg_dsn, autocommit=True) as watch:  # fresh statistics
                wait_until(lambda: watch.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE 'UPDATE alarms %'").fetchone()[0] == 8, 30,
                    what="eight acts waiting")
        finally:
            locker.execute("COMMIT")
            locker.close()
        for t in threads:
            t.join(60)
        assert len(results) == 8
        assert len([c for _, c in results if c is not None]) == 1
        acks = [h for h in a.alarm_history(r.id) if h["action"] == "acknowledged"]
        assert len(acks) == 1 and b.alarm(r.id).acked_by == acks[0]["by"]
    finally:
        a.close()
        b.close()


@pytest.fixture
def own_postgres():
    """A PostgreSQL of the test's own, so that restarting it disturbs no other test."""
    root = tempfile.mkdtemp(prefix="hub-pg-restart-")
    server = PostgresServer(root).init().start()
    yield server
    server.stop()


def test_a_restart_of_postgresql_is_waited_out_and_nothing_acknowledged_is_lost(own_postgres):
    metrics = Metrics()
    recorded = []

    class Hub:  # what StoreHealth needs of the hub
        clock = Clock()

        def __init__(self):
            self.metrics = metrics

        def record_events(self, events):
            recorded.extend(events)

    health = StoreHealth(Hub())
    lock = threading.Lock()
    store = PostgresStore(own_postgres.dsn(), pool=2, retry_seconds=60,
                          on_health=lambda up, why: (lock.acquire(), health.changed(up, why),
                                                     lock.release()))
    store.open()
    acknowledged: list[str] = []
    unknown: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            device = Device(f"d{i}", "n", "p1", "m", "demo", created_ts=float(i))
            try:
                store.add_device(device)
            except StoreUnavailable:
                unknown.append(device.id)  # the commit's outcome is not known
            else:
                acknowledged.append(device.id)
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        wait_until(lambda: len(acknowledged) > 20, 30, what="writes before the restart")
        own_postgres.stop()
        wait_until(lambda: metrics.value("store.up", backend="postgresql") == 0, 30,
                   what="the outage noticed")
        before = len(acknowledged)
        own_postgres.start()
        wait_until(lambda: len(acknowledged) > before + 20, 60, what="writes after the restart")
    finally:
        stop.set()
        t.join(60)
    stored = {d.id for d in store.devices()}
    assert set(acknowledged) <= stored, "an acknowledged write was lost"
    assert store.retries > 0
    assert metrics.value("store.up", backend="postgresql") == 1
    assert metrics.value("store.outages", backend="postgresql") == 1
    assert [(e.code, e.state) for e in recorded] == [(FAULT_CODE, EventState.RAISED),
                                                     (FAULT_CODE, EventState.CLEARED)]
    assert recorded[0].id == recorded[1].id
    store.close()


def test_a_call_fails_clearly_when_postgresql_stays_away(own_postgres):
    store = PostgresStore(own_postgres.dsn(), retry_seconds=0.5)
    store.open()
    own_postgres.stop()
    try:
        with pytest.raises(StoreUnavailable):
            store.user_by_name("x")
        assert not store.available
    finally:
        own_postgres.start()
    assert store.user_by_name("x") is None and store.available
    store.close()


def test_two_hubs_share_one_postgresql_store(tmp_path, pg_dsn):
    """Two hub processes (two nodes) on one PostgreSQL: the first admin made with ``hub
    users add`` logs in on both; a user made through one node's API logs in on the other;
    logging out on one ends the token on the other."""
    api = {"store": {"backend": "postgresql", "dsn": pg_dsn}}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = start_api_hub(tmp_path / "a", api)
    two = None
    try:
        two = start_api_hub(tmp_path / "b", api, first_admin=False)
        token = one.login("root", ROOT_PASSWORD)
        with one.client(token) as c:
            r = c.post("/api/users", json={"name": "op9", "password": "Good-pass-1234",
                                           "role": "operator", "node_id": 1})
            assert r.status_code == 201, r.text
        t2 = two.login("op9")
        with two.client(t2) as c:
            assert c.get("/api/auth/me").json()["name"] == "op9"
        with one.client(t2) as c:
            assert c.get("/api/auth/me").status_code == 200
            assert c.post("/api/auth/logout").status_code == 204
        with two.client(t2) as c:
            assert c.get("/api/auth/me").status_code == 401
        listed = hub_cli(two.config, "users", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert {"root", "op9"} <= {u["name"] for u in map(__import__("json").loads,
                                                            listed.stdout.splitlines())}
        with psycopg.connect(pg_dsn) as db:
            assert db.execute("SELECT count(*) FROM users").fetchone()[0] == 2
        assert "platform store: postgresql" in "".join(one.proc.lines)
    finally:
        one.stop()
        if two is not None:
            two.stop()


def test_a_hub_answers_503_while_postgresql_is_away_and_recovers(tmp_path, own_postgres):
    hub = start_api_hub(tmp_path, {"store": {"backend": "postgresql", "retry_seconds": 0.5,
                                             "dsn": own_postgres.dsn()}})
    try:
        token = hub.login("root", ROOT_PASSWORD)
        with hub.client(token) as c:
            assert c.get("/api/auth/me").status_code == 200
            own_postgres.stop()
            r = c.get("/api/auth/me")
            assert (r.status_code, r.headers.get("retry-after")) == (503, "5"), r.text
            assert "unavailable" in r.json()["detail"] and "host=" not in r.text
            assert c.get("/readyz").status_code == 503
            hub.proc.wait_for("platform store unavailable")
            assert re.search(r'store_up\{backend="postgresql"\} 0', c.get("/metrics").text)
            own_postgres.start()
            wait_until(lambda: c.get("/api/auth/me").status_code == 200, 30,
                       what="the API answering again")
            hub.proc.wait_for("platform store reachable again")
            assert re.search(r'store_up\{backend="postgresql"\} 1', c.get("/metrics").text)
            faults = c.get("/api/events", params={"device": "hub", "kind": "fault"}).json()
            assert [(e["code"], e["state"]) for e in faults["items"]
                    if e["code"] == "store_unavailable"] == [
                ("store_unavailable", "raised"), ("store_unavailable", "cleared")]
    finally:
        hub.proc.stop()
