"""The API's parts without HTTP: the platform store and its migrations, scopes in the tree,
the body guard's depth scan, downsampling, passwords and throttles, the ``api:`` section."""

from __future__ import annotations

import sqlite3

import pytest

from hub.api.authz import Principal, Tree
from hub.api.guard import json_depth
from hub.api.security import (
    FailureCounter,
    PolicyError,
    Throttle,
    check_password_policy,
    hash_password,
    new_api_key,
    split_api_key,
    token_hash,
    verify_password,
)
from hub.api.views import downsample
from hub.model import Reading
from hub.store import Conflict, Device, Grant, NotFound, SqliteStore
from hub.store import sqlite as store_sqlite


@pytest.fixture
def store(make_store):
    """The platform store on each backend (SQLite, PostgreSQL: tests/support/postgres.py)."""
    return make_store()


@pytest.fixture
def sqlite_store(tmp_path):
    s = SqliteStore(str(tmp_path / "platform.sqlite"))
    s.open()
    yield s
    s.close()


def test_migrations_run_once_and_a_newer_store_is_refused(make_store, monkeypatch):
    s = make_store()
    n = store_sqlite.SCHEMA_VERSION
    assert s.schema_version() == n == len(store_sqlite.MIGRATIONS)
    s.add_user("a", "h", now=1.0)
    s.close()
    # a later migration is applied to an existing store, keeping its rows
    monkeypatch.setattr(store_sqlite, "MIGRATIONS", [*store_sqlite.MIGRATIONS,
                                                     "ALTER TABLE users ADD COLUMN phone TEXT;"])
    monkeypatch.setattr(store_sqlite, "SCHEMA_VERSION", n + 1)
    s = make_store()
    assert s.schema_version() == n + 1 and s.user_by_name("a") is not None
    s.close()
    monkeypatch.setattr(store_sqlite, "SCHEMA_VERSION", n)
    monkeypatch.setattr(store_sqlite, "MIGRATIONS", store_sqlite.MIGRATIONS[:n])
    with pytest.raises(Exception, match="newer than this hub"):
        make_store()


def test_store_users_nodes_devices(store):
    u = store.add_user("alice", "hash", now=5.0)
    with pytest.raises(Conflict):
        store.add_user("alice", "hash")
    assert store.update_user(u.id, disabled=1).disabled
    with pytest.raises(ValueError):
        store.update_user(u.id, name="bob")
    unit = store.add_node(1, "unit", "U")
    proj = store.add_node(unit.id, "project", "P", "p", {"region": "r"})
    with pytest.raises(Conflict):
        store.add_node(proj.id, "unit", "under a project")
    with pytest.raises(Conflict):
        store.add_node(unit.id, "project", "again", "p")
    store.add_device(Device("dev", "n", "p", "m", "t", {"slave": 1}))
    assert store.get_device("dev").address == {"slave": 1}
    with pytest.raises(Conflict, match="devices"):
        store.delete_node(proj.id)
    with pytest.raises(Conflict, match="under it"):
        store.delete_node(unit.id)
    store.delete_device("dev")
    with pytest.raises(NotFound):
        store.delete_device("dev")
    store.delete_node(proj.id)
    assert [n.kind for n in store.nodes()] == ["platform", "unit"]


def test_sessions_and_keys(store):
    u = store.add_user("a", "h")
    s = store.add_session(u.id, "t", "r", 10, 20, now=0)
    assert store.session_by_token("t") == s
    store.revoke_session(s.id)
    assert store.session_by_refresh("r").revoked
    # expired sessions are purged as new ones come
    store.add_session(u.id, "t2", "r2", 10, 20, now=30)
    assert store.session_by_token("t") is None
    key_id, full, secret_hash = new_api_key()
    assert split_api_key(full)[0] == key_id and token_hash(split_api_key(full)[1]) == secret_hash
    assert split_api_key("hubk_only") is None and split_api_key("nope_a_b") is None


def test_scope_follows_the_tree():
    from hub.store import Node

    tree = Tree([Node(1, None, "platform", "platform"), Node(2, 1, "unit", "U"),
                 Node(3, 2, "project", "P1", "p1"), Node(4, 2, "project", "P2", "p2"),
                 Node(5, 1, "project", "P3", "p3")])
    mgr = Principal("m", [Grant(1, 1, "manager", 2)])
    assert mgr.can(tree, 3, "operator") and mgr.can_read(tree, 4)
    assert not mgr.can_read(tree, 5) and not mgr.can_read(tree, 1)
    assert mgr.may_grant(tree, "manager", 3) and not mgr.may_grant(tree, "admin", 3)
    assert not mgr.may_grant(tree, "viewer", 5)
    aud = Principal("a", [Grant(1, 1, "auditor", 3)])
    assert aud.can_read(tree, 3) and not aud.can(tree, 3, "viewer") and aud.audits(tree, 3)
    op = Principal("o", [Grant(1, 1, "operator", 3), Grant(2, 1, "viewer", 1)])
    assert op.can(tree, 3, "operator") and not op.can(tree, 4, "operator")
    assert op.can_read(tree, 5) and not op.may_grant(tree, "viewer", 3)
    assert tree.node_of_project("unknown") == 1 and tree.path(3) == ["platform", "U", "P1"]


def test_json_depth_skips_strings():
    assert json_depth(b'{"a": [1, {"b": "[[[[{{{{"}]}') == 3
    assert json_depth(b'"\\"[["') == 0
    assert json_depth(b"[" * 50 + b"]" * 50) == 50


def test_downsample_buckets():
    rs = [Reading("d", "temperature", float(v), float(t)) for t, v in
          enumerate([1, 5, 3, 2, 8, 4, 6, 7, 9, 0])]
    width, points = downsample(rs, 0, 10, 2)
    assert width == 5
    assert [(p.min, p.max, p.avg, p.n) for p in points] == [(1, 8, 3.8, 5), (0, 9, 5.2, 5)]
    width, points = downsample(rs[:2], 0, 10, 5)
    assert width == 0 and [p.avg for p in points] == [1, 5]


def test_passwords_and_policy():
    h = hash_password("Correct-horse-9")
    assert h.startswith("$argon2id$")
    assert verify_password(h, "Correct-horse-9") and not verify_password(h, "wrong")
    assert not verify_password(None, "anything") and not verify_password("garbage", "x")
    for bad in ("short", "aaaaaaaaaaaaaa", "alice-is-great-1", "my-password-1"):
        with pytest.raises(PolicyError):
            check_password_policy(bad, "alice")
    check_password_policy("Correct-horse-9", "alice")


def test_failure_counter_window():
    c = FailureCounter(Throttle(limit=2, window=10), max_keys=2)
    c.fail("a", 0)
    assert c.blocked_for("a", 1) == 0
    c.fail("a", 1)
    assert c.blocked_for("a", 2) == 8
    assert c.blocked_for("a", 10.5) == 0  # the first failure left the window
    c.fail("b", 0)
    c.fail("c", 0)  # bounded: the oldest key goes
    assert len(c._fails) == 2


def test_api_section_is_checked(tmp_path):
    from hub.config import check_config
    from hub.pluginmanager import make_plugins
    from hub.validate import ConfigError

    plugins = make_plugins()
    base = {"hub": {"state_dir": str(tmp_path)}, "devices": []}
    assert check_config(base, str(tmp_path / "h.yaml"), plugins).api is None
    cfg = check_config({**base, "api": {"port": 0}}, str(tmp_path / "h.yaml"), plugins)
    assert cfg.api.store_path == str(tmp_path / "platform.sqlite") and cfg.api.port == 0
    with pytest.raises(ConfigError) as e:
        check_config({**base, "api": {"port": 70000, "tls": {"cert": "missing.pem"},
                                      "colour": 1}}, str(tmp_path / "h.yaml"), plugins)
    text = str(e.value)
    assert "api.port: 70000 is outside 0..65535" in text
    assert "api.tls: give both cert and key" in text
    assert "api.colour: is not a known key here" in text
    with pytest.raises(ConfigError, match="cannot load the certificate"):
        check_config({**base, "api": {"tls": {"cert": "c.pem", "key": "k.pem"}}},
                     str(tmp_path / "h.yaml"), plugins)


def test_store_file_is_private(sqlite_store):
    import os
    import stat

    store = sqlite_store
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
