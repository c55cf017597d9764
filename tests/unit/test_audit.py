"""The audit log: canonical bytes and chain vectors, the store on a task.Clock, tamper
detection on a real SQLite file, the command lifecycle's ordering, configuration."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import stat
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.internet.task import Clock

from hub.audit import AuditError, AuditLog, read_snapshot, verify
from hub.audit.chain import GENESIS, canonical, chain_hash, checkpoint_body, entry_body
from hub.audit.keys import key_fingerprint, load_or_create, public_path, verifier
from tests.support.audit import audit_rows
from tests.support.fakes import CONFIG, FakeTarget

FIXED_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


# ---------------------------------------------------------------- encoding vectors


def test_canonical_json_byte_vector():
    """Sorted keys at every level, no whitespace, UTF-8 not \\u escapes, floats as Python's
    shortest repr; NaN is refused rather than written as invalid JSON."""
    got = canonical({"b": 1, "a": [1.5, "温度"], "c": {"z": None, "y": True}})
    assert got == b'{"a":[1.5,"\xe6\xb8\xa9\xe5\xba\xa6"],"b":1,"c":{"y":true,"z":null}}'
    with pytest.raises(ValueError):
        canonical({"v": float("nan")})


def test_entry_hash_and_checkpoint_signature_vectors():
    """The documented construction, checked with nothing but hashlib: SHA-256 over 32 zero
    bytes and the body for seq 1; an Ed25519 signature (deterministic) over the checkpoint."""
    body = entry_body(1, T0 + 0.25, "alice", "command.requested", "efd-1",
                      {"action": "trip", "params": {}, "ttl": 30.0})
    assert body == (b'{"action":"command.requested","actor":"alice","details":{"action":'
                    b'"trip","params":{},"ttl":30.0},"seq":1,"subject":"efd-1",'
                    b'"time":"2026-01-01T00:00:00.250000Z","v":1}')
    head = hashlib.sha256(bytes(32) + body).hexdigest()
    assert head == "db41e4f11e2802bb5c6cd02384ead6a482a9d33b4ff8dfa2d41188469bc366ac"
    assert chain_hash(GENESIS, body).hex() == head
    cp = checkpoint_body(1, head, T0 + 1, 1000)
    assert cp == (b'{"every":1000,"head":"' + head.encode() + b'","seq":1,"time":'
                  b'"2026-01-01T00:00:01.000000Z","type":"hub.audit.checkpoint","v":1}')
    assert FIXED_KEY.sign(cp).hex() == (
        "88f3414865575bdb74bcc028c6edc68fb04a07e5bceeafdc7a50bb29237495fd"
        "baa4c736420fd3e2a6be296e79af48f162cb4c6d2e41dbadc845d7478741e700")
    assert key_fingerprint(FIXED_KEY.public_key()) == (
        "SHA256:56475aa75463474c0285df5dbf2bcab73da651358839e9b77481b2eab107708c")


# ---------------------------------------------------------------- the store


def make_log(tmp_path, clock=None, key=FIXED_KEY, **kw):
    clock = clock or Clock()
    if clock.seconds() == 0:
        clock.advance(T0)
    log = AuditLog(str(tmp_path / "audit.sqlite"), clock=clock, key=key, **kw)
    log.open()
    return log, clock


def fired(d):
    out = []
    d.addBoth(out.append)
    return out


def test_entries_commit_in_groups_and_their_deferreds_fire_after_the_commit(tmp_path):
    log, clock = make_log(tmp_path)
    ds = [fired(log.record("alice", "event.acknowledged", f"ev{i}", {"n": i})) for i in range(3)]
    assert ds == [[], [], []]
    reader = sqlite3.connect(log.path)
    assert reader.execute("SELECT count(*) FROM entries").fetchone()[0] == 0
    clock.advance(0.005)
    assert ds == [[1], [2], [3]]
    assert reader.execute("SELECT count(*) FROM entries").fetchone()[0] == 3
    assert log.record_now("bob", "cursor.dropped", "old", {}) == 4  # committed on return
    assert reader.execute("SELECT max(seq) FROM entries").fetchone()[0] == 4
    log.close()


def test_checkpoints_every_n_entries_after_an_interval_and_on_close(tmp_path):
    log, clock = make_log(tmp_path, checkpoint_every=3, checkpoint_interval=60)
    for i in range(4):
        log.record("a", "event.acknowledged", f"e{i}", {})
    clock.advance(0.005)
    db = sqlite3.connect(log.path)
    assert [r[0] for r in db.execute("SELECT seq FROM checkpoints")] == [3]
    clock.advance(60)  # seq 4 has waited checkpoint_interval
    assert [r[0] for r in db.execute("SELECT seq FROM checkpoints")] == [3, 4]
    log.record("a", "event.acknowledged", "e5", {})
    log.close()  # a clean shutdown signs the tail
    assert [r[0] for r in db.execute("SELECT seq FROM checkpoints")] == [3, 4, 5]
    report = verify(*read_snapshot(log.path), verifier(FIXED_KEY.public_key()))
    assert report.ok and not report.warnings and report.last_signed == 5


def test_the_chain_continues_across_a_reopen(tmp_path):
    log, clock = make_log(tmp_path)
    log.record_now("a", "config.loaded", "/etc/hub.yaml", {"sha256": "00"})
    log.close()
    log, _ = make_log(tmp_path, clock)
    assert log.last_config() == "00"
    assert log.record_now("a", "config.loaded", "/etc/hub.yaml", {"sha256": "11"}) == 2
    log.close()
    assert verify(*read_snapshot(log.path), verifier(FIXED_KEY.public_key())).ok


def test_a_failed_commit_fails_record_now_and_the_chain_stays_consistent(tmp_path):
    log, clock = make_log(tmp_path)
    log.record_now("a", "config.loaded", "x", {})
    log._db.execute("PRAGMA query_only = 1")  # the disk refuses writes from now on
    with pytest.raises(AuditError, match="readonly|read-only|query_only"):
        log.record_now("a", "command.requested", "efd-1", {})
    log._db.execute("PRAGMA query_only = 0")
    assert log.record_now("a", "command.requested", "efd-1", {}) == 2
    with pytest.raises(AuditError, match="not JSON"):
        log.record_now("a", "command.requested", "efd-1", {"v": float("nan")})
    log.close()
    assert verify(*read_snapshot(log.path), verifier(FIXED_KEY.public_key())).ok


# ---------------------------------------------------------------- tampering


@pytest.fixture
def trail(tmp_path):
    """Six entries, a checkpoint at seq 4, two unsigned; the file closed without the
    shutdown checkpoint (as after a crash)."""
    log, clock = make_log(tmp_path, checkpoint_every=4)
    for i in range(1, 7):
        log.record("alice", "command.requested", f"efd-{i}", {"action": "trip", "n": i})
        clock.advance(1)
    log._checkpoint_every = 10**9
    log._key = None  # no shutdown checkpoint: seqs 5..6 stay unsigned
    log.close()
    return log.path


def check(path, key=FIXED_KEY):
    return verify(*read_snapshot(path), verifier(key.public_key()))


def sql(path, *statements):
    db = sqlite3.connect(path)
    for s in statements:
        db.execute(s)
    db.commit()
    db.close()


def test_an_untouched_trail_verifies_and_its_unsigned_tail_is_a_warning(trail):
    report = check(trail)
    assert report.ok and report.entries == 6 and report.last_signed == 4
    assert report.warnings == [re.sub(r"\s+", " ", """entries 5..6 are not yet signed by a
        checkpoint (chained, but whoever can write the file could rewrite them with the
        chain)""")]


def test_an_edited_detail_is_named_by_its_seq(trail):
    sql(trail, "UPDATE entries SET body = replace(body, '\"trip\"', '\"close\"') WHERE seq = 3")
    report = check(trail)
    assert not report.ok and report.first_broken == 3
    assert report.errors[0] == (3, "entry edited: its content no longer matches its hash")


def test_an_edited_column_is_caught_even_with_the_body_intact(trail):
    sql(trail, "UPDATE entries SET actor = 'mallory' WHERE seq = 2")
    assert check(trail).errors == [(2, "entry edited: column actor is 'mallory', the hashed "
                                       "entry says 'alice'")]


def test_a_deleted_entry_is_named(trail):
    sql(trail, "DELETE FROM entries WHERE seq = 2")
    report = check(trail)
    assert report.first_broken == 2
    assert report.errors[0] == (2, "entry missing: seq 2 deleted")


def test_deleting_signed_entries_at_the_end_is_caught(trail):
    sql(trail, "DELETE FROM entries WHERE seq >= 4")
    report = check(trail)
    assert report.errors == [(4, "checkpoint at seq 4 signs entries that are gone: seqs 4..4 "
                                 "deleted")]


def test_two_swapped_entries_are_named(trail):
    sql(trail, "UPDATE entries SET seq = -1 WHERE seq = 3", "UPDATE entries SET seq = 3 WHERE "
        "seq = 4", "UPDATE entries SET seq = 4 WHERE seq = -1")
    report = check(trail)
    assert report.first_broken == 3
    assert report.errors[0] == (3, "entries reordered: the row at seq 3 holds the entry of "
                                   "seq 4")


def test_a_rewritten_chain_is_caught_by_the_signed_checkpoint(trail):
    """Whoever edits an entry and recomputes every later hash still cannot sign the head."""
    db = sqlite3.connect(trail)
    rows = db.execute("SELECT seq, body FROM entries ORDER BY seq").fetchall()
    prev = GENESIS
    for seq, body in rows:
        if seq == 2:
            body = body.replace('"trip"', '"close"')
        prev = chain_hash(prev, body.encode())
        db.execute("UPDATE entries SET body = ?, hash = ? WHERE seq = ?", (body, prev.hex(), seq))
    db.commit()
    db.close()
    report = check(trail)
    assert report.errors == [(4, "checkpoint at seq 4: the signed head differs from the "
                                 "recomputed chain: an entry in seqs 1..4 was changed")]


def test_deleted_checkpoints_and_a_rewritten_chain_break_the_signed_promise(tmp_path):
    """Each checkpoint signs how soon the next one comes: deleting the later checkpoints to
    rewrite the entries they signed leaves that promise broken."""
    log, clock = make_log(tmp_path, checkpoint_every=2)
    for i in range(1, 7):
        log.record("alice", "command.requested", f"efd-{i}", {"action": "trip"})
    log.close()
    db = sqlite3.connect(log.path)
    assert [r[0] for r in db.execute("SELECT seq FROM checkpoints")] == [2, 4, 6]
    db.execute("DELETE FROM checkpoints WHERE seq > 2")
    prev = bytes.fromhex(db.execute("SELECT hash FROM entries WHERE seq = 2").fetchone()[0])
    for seq, body in db.execute("SELECT seq, body FROM entries WHERE seq > 2").fetchall():
        body = body.replace('"trip"', '"close"')
        prev = chain_hash(prev, body.encode())
        db.execute("UPDATE entries SET body = ?, hash = ? WHERE seq = ?", (body, prev.hex(), seq))
    db.commit()
    db.close()
    assert check(log.path).errors == [(3, "checkpoints missing: the one at seq 2 promised the "
                                          "next within 2 entries, but none signs seqs 3..6")]


def test_a_trail_longer_than_checkpoint_every_without_any_checkpoint_fails(trail):
    sql(trail, "DELETE FROM checkpoints")
    report = verify(*read_snapshot(trail), verifier(FIXED_KEY.public_key()), expect_every=4)
    assert report.errors == [(1, "checkpoints missing: none signs seqs 1..6, though the hub "
                                 "signs every 4 entries (deleted, unless the hub ran with a "
                                 "larger audit.checkpoint_every)")]
    assert verify(*read_snapshot(trail), verifier(FIXED_KEY.public_key()),
                  expect_every=6).ok


def test_a_raised_checkpoint_every_keeps_the_last_checkpoints_promise(tmp_path):
    log, clock = make_log(tmp_path, checkpoint_every=2)
    for _ in range(2):
        log.record("a", "event.acknowledged", "e", {})
    log.flush()
    log._key, key = None, log._key  # a crash: no shutdown checkpoint
    log.close()
    log, _ = make_log(tmp_path, clock, key=key, checkpoint_every=1000)
    for _ in range(3):
        log.record("a", "event.acknowledged", "e", {})
    log.flush()
    db = sqlite3.connect(log.path)
    assert [r[0] for r in db.execute("SELECT seq FROM checkpoints")] == [2, 4]
    log.close()
    assert check(log.path).ok


def test_a_checkpoint_forged_with_another_key_is_refused(trail):
    """A forger signs the rewritten head with a key of their own: the trusted key refuses
    it; with the forger's key as the trusted one the real checkpoint fails instead."""
    db = sqlite3.connect(trail)
    head = db.execute("SELECT hash FROM entries WHERE seq = 6").fetchone()[0]
    other = Ed25519PrivateKey.generate()
    body = checkpoint_body(6, head, T0 + 10, 4)
    db.execute("INSERT INTO checkpoints VALUES (6, ?, ?, 'forged')",
               (body.decode(), other.sign(body).hex()))
    db.commit()
    db.close()
    report = check(trail)
    assert report.errors == [(6, "checkpoint at seq 6: bad signature (not signed by this "
                                 "public key, or altered)")]
    assert check(trail, other).first_broken == 4


def test_an_edit_made_while_the_hub_was_down_is_reported_when_it_reopens(trail, logged):
    """The unsigned tail and the last checkpoint are checked at open: the hub still starts,
    but says so (and counts it) before it chains anything onto the edited entry."""
    log, _ = make_log(Path(trail).parent)
    assert log._metrics.value("audit.tamper_suspected") == 0
    log._key = None  # closed without the shutdown checkpoint: seqs 5..6 stay unsigned
    log.close()
    sql(trail, "UPDATE entries SET body = replace(body, '\"trip\"', '\"close\"') WHERE seq = 5")
    log, _ = make_log(Path(trail).parent)
    assert log._metrics.value("audit.tamper_suspected") == 1
    assert any("was altered while the hub was not running: seq 5: entry edited" in line
               for line in logged)
    log.close()


# ---------------------------------------------------------------- the hub's lifecycle

class AuditingTarget(FakeTarget):
    """A transport that looks, as the command reaches it, at what another process reading
    the audit file would see."""

    def __init__(self, path, answer="ok"):
        super().__init__(answer)
        self.path = path
        self.seen_at_send = []

    def send_command(self, device, command):
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        self.seen_at_send.append([(a, json.loads(b)["details"]["command_id"]) for a, b in
                                  db.execute("SELECT action, body FROM entries "
                                             "WHERE action LIKE 'command.%'")])
        db.close()
        return super().send_command(device, command)


def test_a_command_is_on_disk_in_the_audit_log_before_its_transport_sends_it(make_hub):
    from hub.model import Command

    hub = make_hub(CONFIG)
    target = AuditingTarget(hub.audit.path)
    hub.commands.register_target("sim", target)
    cmd = Command("c1", "d1", "trip", hub.clock.seconds(), ttl=10, requested_by="alice")
    hub.commands.execute(cmd)
    assert target.seen_at_send == [[("command.requested", "c1")]]
    hub.clock.advance(0.01)
    rows = audit_rows(hub)
    assert [r[:3] for r in rows] == [
        (rows[0][0], "config.loaded", os.path.abspath("test.yaml")),
        ("alice", "command.requested", "d1"), ("alice", "command.finished", "d1")]
    assert rows[1][3] == {"command_id": "c1", "action": "trip", "channel": "", "params": {},
                          "ttl": 10.0, "transport": "sim"}
    assert rows[2][3]["status"] == "succeeded"


def test_a_command_the_audit_log_cannot_record_is_refused_and_never_sent(make_hub):
    from hub.commands import CommandError
    from hub.model import Command

    hub = make_hub(CONFIG)
    target = FakeTarget("ok")
    hub.commands.register_target("sim", target)
    hub.audit._db.execute("PRAGMA query_only = 1")  # a full or read-only disk
    with pytest.raises(CommandError, match="not sent: the audit log cannot record it"):
        hub.commands.execute(Command("c1", "d1", "trip", hub.clock.seconds(),
                                     requested_by="alice"))
    assert target.sent == [] and "c1" not in hub.commands.pending
    assert hub.metrics.value("audit.write_errors") == 1
    hub.audit._db.execute("PRAGMA query_only = 0")


def test_refused_commands_and_dropped_cursors_are_audited(make_hub, tmp_path):
    from hub.admin import AdminProtocol
    from hub.commands import CommandError
    from hub.journal import Journal
    from hub.model import Command

    (tmp_path / "var").mkdir()
    j = Journal(str(tmp_path / "var" / "journal.sqlite"), clock=Clock())
    j.open()
    j.set_cursor("old-sink", 0)  # a sink's cursor from before it was removed
    j.close()
    hub = make_hub(CONFIG)
    with pytest.raises(CommandError):
        hub.commands.execute(Command("c9", "zz", "trip", hub.clock.seconds(),
                                     requested_by="eve"))
    answer = AdminProtocol(hub).op_drop_cursor({"op": "drop_cursor", "name": "old-sink",
                                                "by": "bob"})
    assert answer == {"ok": True, "name": "old-sink"}
    hub.clock.advance(0.01)
    rows = audit_rows(hub)
    assert [r[:3] for r in rows[1:]] == [("eve", "command.refused", "zz"),
                                         ("bob", "cursor.dropped", "old-sink")]
    assert rows[1][3]["reason"] == "unknown device 'zz'"


def test_an_acknowledgement_is_audited_with_its_event_and_device(make_hub):
    from hub.admin import AdminProtocol
    from hub.model import Reading

    hub = make_hub(CONFIG)
    now = hub.clock.seconds()
    hub.ingest("d1", [Reading("d1", "temperature", 91.0, now, "T1")])
    hub.clock.advance(0.05)
    alarm = next(e for e in hub.journal.active_events() if e.level.value == "alarm")
    answers = fired(AdminProtocol(hub).op_ack({"op": "ack", "event_id": alarm.id, "by": "carol",
                                               "note": "breaker checked"}))
    assert answers == []  # answered after both commits
    hub.clock.advance(0.05)
    assert answers[0]["ok"] is True
    actor, action, subject, details = audit_rows(hub)[-1]
    assert (actor, action, subject) == ("carol", "event.acknowledged", alarm.id)
    assert details == {"device": "d1", "code": "temperature", "kind": "alarm",
                       "channel": "T1", "note": "breaker checked"}


def test_a_resumed_command_is_audited_before_it_is_sent_again(make_hub):
    from hub.model import Command

    hub = make_hub(CONFIG)
    target = AuditingTarget(hub.audit.path)
    hub.commands.register_target("sim", target)
    cmd = Command("c7", "d1", "silence", hub.clock.seconds() - 5, ttl=30, requested_by="dan")
    hub.commands.resume(cmd)  # accepted before a restart, journaled then
    assert target.seen_at_send == [[("command.resumed", "c7")]]
    hub.clock.advance(0.01)
    resumed = audit_rows(hub)[1]
    assert resumed[:3] == ("dan", "command.resumed", "d1") and resumed[3]["ttl_left"] == 25.0


def test_every_start_records_the_configuration_file_and_its_hash(tmp_path, hub_clock):
    """A changed configuration shows as a sha256 unlike the previous start's."""
    from hub.config import load_config
    from hub.core import Hub
    from hub.pluginmanager import make_plugins

    path = tmp_path / "hub.yaml"
    plugins = make_plugins()
    details, digests = [], []
    for name in ("a", "b"):
        text = (f"hub: {{name: {name}}}\njournal: {{path: {tmp_path / 'j.sqlite'}}}\n"
                f"audit: {{path: {tmp_path / 'a.sqlite'}, key_file: k.pem}}\n")
        path.write_text(text)
        digests.append(hashlib.sha256(text.encode()).hexdigest())
        hub = Hub(load_config(str(path), plugins), plugins, hub_clock)
        hub.open()
        hub.close()
        details.append(audit_rows(hub)[-1])
    assert [(d[1], d[2]) for d in details] == [("config.loaded", str(path))] * 2
    assert [d[3] for d in details] == [
        {"path": str(path), "sha256": digests[0], "previous_sha256": None},
        {"path": str(path), "sha256": digests[1], "previous_sha256": digests[0]}]
    assert (tmp_path / "k.pem").exists() and (tmp_path / "k.pub.pem").exists()


def test_hub_start_makes_a_private_key_exports_the_public_one_and_logs_its_fingerprint(
        make_hub, tmp_path, logged):
    hub = make_hub(CONFIG)
    key_file = Path(hub.audit_settings.key_file)
    assert key_file == tmp_path / "var" / "audit_key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key, created = load_or_create(str(key_file))
    assert not created
    assert Path(public_path(str(key_file))).read_bytes().startswith(b"-----BEGIN PUBLIC KEY")
    assert hub.audit.fingerprint == key_fingerprint(key.public_key())
    assert any(f"checkpoints signed by {hub.audit.fingerprint} (new key" in line
               for line in logged)
    hub.close()
    assert verify(*read_snapshot(hub.audit.path), verifier(key.public_key())).ok
    assert not any("readable or writable by others" in line for line in logged)
    key_file.chmod(0o644)
    make_hub(CONFIG)
    assert any("audit key " + str(key_file) + " is readable or writable by others (mode 644)"
               in line for line in logged)


# ---------------------------------------------------------------- configuration and CLI


def test_audit_configuration_errors_name_file_key_and_expectation(tmp_path):
    from hub.config import check_config
    from hub.pluginmanager import make_plugins
    from hub.validate import ConfigError

    (tmp_path / "not-a-key.pem").write_text("hello\n")
    with pytest.raises(ConfigError) as e:
        check_config({"audit": {"key_file": "not-a-key.pem", "checkpoint_every": 0,
                                "checkpoint_interval": "often", "sign": True}},
                     str(tmp_path / "hub.yaml"), make_plugins())
    f = str(tmp_path / "hub.yaml")
    assert e.value.errors[0].startswith(f"{f}: audit.key_file: expected an Ed25519 private "
                                        "key in PEM")
    assert e.value.errors[1:] == [f"{f}: audit.checkpoint_every: 0 is outside 1..1000000",
                                  f"{f}: audit.checkpoint_interval: expected a number, got "
                                  "'often'", f"{f}: audit.sign: is not a known key here"]
    cfg = check_config({"audit": {"key_file": "keys/audit.pem"}}, f, make_plugins())
    assert cfg.audit.key_file == str(tmp_path / "keys" / "audit.pem")  # beside the config
    assert cfg.audit.checkpoint_every == 1000 and cfg.audit.checkpoint_interval == 300


def test_cli_verify_and_list(make_hub, tmp_path, capsys):
    from hub.cli import main
    from hub.model import Command

    config = tmp_path / "hub.yaml"
    config.write_text(yaml.safe_dump({"hub": {"state_dir": str(tmp_path / "var")}}))
    hub = make_hub(CONFIG)
    hub.commands.register_target("sim", FakeTarget("ok"))
    hub.commands.execute(Command("c1", "d1", "trip", hub.clock.seconds(), requested_by="al"))
    hub.clock.advance(0.01)
    assert main(["audit", "verify", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "3 entries, 0 checkpoints" in out and "warning: entries 1..3 are not yet signed" in out
    assert main(["audit", "list", "-c", str(config), "--device", "d1", "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(e["seq"], e["action"], e["actor"]) for e in listed] == [
        (2, "command.requested", "al"), (3, "command.finished", "al")]
    hub.close()
    assert main(["audit", "verify", "-c", str(config)]) == 0
    assert "OK: the chain is intact and signed up to seq 3" in capsys.readouterr().out
    sql(hub.audit.path, "UPDATE entries SET body = replace(body, 'trip', 'close') WHERE seq=2")
    assert main(["audit", "verify", "-c", str(config)]) == 1
    out = capsys.readouterr().out
    assert "BROKEN at seq 2: entry edited" in out and "first broken seq 2" in out
    other = tmp_path / "other.pub.pem"
    from hub.audit.keys import public_pem

    other.write_bytes(public_pem(Ed25519PrivateKey.generate().public_key()))
    assert main(["audit", "verify", "-c", str(config), "--public-key", str(other)]) == 1
    assert "bad signature" in capsys.readouterr().out


def test_readme_third_party_verifier_accepts_a_trail_and_refuses_an_edit(trail, tmp_path):
    """The README's stand-alone verifier (sqlite3, hashlib, cryptography) agrees with
    `hub audit verify`."""
    from hub.audit.keys import public_pem

    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    src = next(b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S)
               if "def verify_audit" in b)
    assert len(src.strip().splitlines()) <= 25
    ns: dict = {}
    exec(compile(src, "README.md:audit", "exec"), ns)
    pub = tmp_path / "audit.pub.pem"
    pub.write_bytes(public_pem(FIXED_KEY.public_key()))
    assert ns["verify_audit"](trail, str(pub)) == 4  # the last signed seq
    sql(trail, "UPDATE entries SET body = replace(body, 'trip', 'close') WHERE seq = 3")
    with pytest.raises(ValueError, match="seq 3"):
        ns["verify_audit"](trail, str(pub))
