"""The platform store's firmware repository and OTA campaigns.

A mixin of :class:`hub.store.SqliteStore` (same connection, lock and transactions); its
schema is :data:`MIGRATION` (store migration 6 as assigned; the integrator numbers it on
merge). Image bytes are files under ``<state_dir>/firmware/`` (named by their SHA-256), not
rows. ``ota_history`` holds every phase change of every device of a campaign;
``device_firmware`` the version each device last reported through OTA, by which a campaign
selects devices.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from hub.store.base import NotFound

MIGRATION = """
    CREATE TABLE firmware (
        id INTEGER PRIMARY KEY AUTOINCREMENT, project TEXT NOT NULL, models TEXT NOT NULL,
        version TEXT NOT NULL, scheme TEXT NOT NULL, delivery TEXT NOT NULL,
        size INTEGER NOT NULL, sha256 TEXT NOT NULL, signed INTEGER NOT NULL,
        notes TEXT NOT NULL, uploaded_by TEXT NOT NULL, uploaded_ts REAL NOT NULL,
        UNIQUE (project, version));
    CREATE TABLE ota_campaigns (
        id INTEGER PRIMARY KEY AUTOINCREMENT, project TEXT NOT NULL,
        firmware_id INTEGER NOT NULL REFERENCES firmware (id), name TEXT NOT NULL,
        state TEXT NOT NULL, delivery TEXT NOT NULL, canary INTEGER NOT NULL,
        batch INTEGER NOT NULL, failure_bound REAL NOT NULL, wave INTEGER NOT NULL,
        accepted_wave INTEGER NOT NULL,
        selection TEXT NOT NULL, limits TEXT NOT NULL, reason TEXT NOT NULL,
        created_by TEXT NOT NULL, created_ts REAL NOT NULL, updated_ts REAL NOT NULL);
    CREATE INDEX ota_campaigns_project ON ota_campaigns (project);
    CREATE TABLE ota_devices (
        campaign_id INTEGER NOT NULL REFERENCES ota_campaigns (id), device TEXT NOT NULL,
        wave INTEGER NOT NULL, phase TEXT NOT NULL, attempt INTEGER NOT NULL,
        result_code INTEGER, detail TEXT NOT NULL, from_version TEXT,
        flashed INTEGER NOT NULL, updated_ts REAL NOT NULL,
        PRIMARY KEY (campaign_id, device));
    CREATE TABLE ota_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT, campaign_id INTEGER NOT NULL,
        device TEXT NOT NULL, ts REAL NOT NULL, phase TEXT NOT NULL, detail TEXT NOT NULL);
    CREATE INDEX ota_history_device ON ota_history (campaign_id, device);
    CREATE TABLE device_firmware (
        device TEXT PRIMARY KEY, version TEXT NOT NULL, ts REAL NOT NULL);
"""


@dataclass(frozen=True)
class Firmware:
    id: int
    project: str | None  # None: every project's (stored as '', which UNIQUE compares)
    models: tuple[str, ...]
    version: str
    scheme: str
    delivery: str
    size: int
    sha256: str
    signed: bool
    notes: str
    uploaded_by: str
    uploaded_ts: float

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "models": list(self.models)}


@dataclass(frozen=True)
class Campaign:
    id: int
    project: str
    firmware_id: int
    name: str
    state: str  # running | paused | cancelled | finished
    delivery: str
    canary: int
    batch: int
    failure_bound: float
    wave: int  # the wave started last (0: the first)
    accepted_wave: int  # waves up to this one were resumed by hand: their bound is waived
    selection: dict[str, Any]
    limits: dict[str, Any]
    reason: str  # why it is paused, cancelled or finished
    created_by: str
    created_ts: float
    updated_ts: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CampaignDevice:
    campaign_id: int
    device: str
    wave: int
    phase: str
    attempt: int
    result_code: int | None
    detail: str
    from_version: str | None
    flashed: bool
    updated_ts: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_FW_COLS = "id, project, models, version, scheme, delivery, size, sha256, signed, notes, " \
           "uploaded_by, uploaded_ts"
_CAMPAIGN_COLS = "id, project, firmware_id, name, state, delivery, canary, batch, " \
                 "failure_bound, wave, accepted_wave, selection, limits, reason, created_by, " \
                 "created_ts, updated_ts"
_DEV_COLS = "campaign_id, device, wave, phase, attempt, result_code, detail, from_version, " \
            "flashed, updated_ts"


def _firmware(row: tuple) -> Firmware:
    return Firmware(row[0], row[1] or None, tuple(json.loads(row[2])), *row[3:8],
                    bool(row[8]), *row[9:12])


def _campaign(row: tuple) -> Campaign:
    return Campaign(*row[:11], json.loads(row[11]), json.loads(row[12]), *row[13:17])


def _cdev(row: tuple) -> CampaignDevice:
    return CampaignDevice(*row[:8], bool(row[8]), row[9])


class FirmwareTables:
    """Firmware, campaigns, their devices and history (mixed into the SQLite store)."""

    _read: Any
    _write: Any

    # ---------------------------------------------------------------- firmware

    def firmware_add(self, project: str | None, models: Iterable[str], version: str,
                     scheme: str,
                     delivery: str, size: int, sha256: str, signed: bool, notes: str,
                     by: str, now: float) -> Firmware:
        def do(db: sqlite3.Connection) -> Firmware:
            cur = db.execute(
                f"INSERT INTO firmware ({_FW_COLS[4:]}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (project or "", json.dumps(sorted(set(models))), version, scheme, delivery, size,
                 sha256, int(signed), notes, by, now))
            return _firmware(db.execute(f"SELECT {_FW_COLS} FROM firmware WHERE id = ?",
                                        (cur.lastrowid,)).fetchone())
        return self._write(do)

    def firmware(self, firmware_id: int) -> Firmware | None:
        row = self._read(lambda db: db.execute(
            f"SELECT {_FW_COLS} FROM firmware WHERE id = ?", (firmware_id,)).fetchone())
        return None if row is None else _firmware(row)

    def firmware_list(self, projects: set[str] | None) -> list[Firmware]:
        """The images ``projects`` see (None: all): their own and the global ones."""
        rows = self._read(lambda db: db.execute(
            f"SELECT {_FW_COLS} FROM firmware ORDER BY id").fetchall())
        return [f for f in map(_firmware, rows)
                if projects is None or f.project is None or f.project in projects]

    def firmware_delete(self, firmware_id: int) -> None:
        def do(db: sqlite3.Connection) -> None:
            if db.execute("SELECT 1 FROM ota_campaigns WHERE firmware_id = ?",
                          (firmware_id,)).fetchone():
                from hub.store.base import Conflict
                raise Conflict("campaigns use it; it stays for their history")
            if not db.execute("DELETE FROM firmware WHERE id = ?", (firmware_id,)).rowcount:
                raise NotFound(f"no firmware {firmware_id}")
        self._write(do)

    def firmware_uses(self, sha256: str) -> int:
        return self._read(lambda db: db.execute(
            "SELECT count(*) FROM firmware WHERE sha256 = ?", (sha256,)).fetchone()[0])

    # ---------------------------------------------------------------- campaigns

    def campaign_add(self, project: str, firmware_id: int, name: str, delivery: str,
                     canary: int, batch: int, failure_bound: float,
                     selection: dict[str, Any], limits: dict[str, Any],
                     devices: list[tuple[str, int, str | None]], by: str,
                     now: float) -> Campaign:
        """A running campaign over ``devices`` (id, wave, version before), all queued."""
        def do(db: sqlite3.Connection) -> Campaign:
            cur = db.execute(
                f"INSERT INTO ota_campaigns ({_CAMPAIGN_COLS[4:]}) VALUES "
                "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (project, firmware_id, name, "running", delivery, canary, batch,
                 failure_bound, 0, -1, json.dumps(selection), json.dumps(limits), "", by, now,
                 now))
            cid = cur.lastrowid
            db.executemany(
                f"INSERT INTO ota_devices ({_DEV_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [(cid, d, wave, "queued", 0, None, "", v, 0, now) for d, wave, v in devices])
            return _campaign(db.execute(
                f"SELECT {_CAMPAIGN_COLS} FROM ota_campaigns WHERE id = ?", (cid,)).fetchone())
        return self._write(do)

    def campaign(self, campaign_id: int) -> Campaign | None:
        row = self._read(lambda db: db.execute(
            f"SELECT {_CAMPAIGN_COLS} FROM ota_campaigns WHERE id = ?",
            (campaign_id,)).fetchone())
        return None if row is None else _campaign(row)

    def campaigns(self, projects: set[str] | None = None,
                  states: Iterable[str] | None = None) -> list[Campaign]:
        rows = self._read(lambda db: db.execute(
            f"SELECT {_CAMPAIGN_COLS} FROM ota_campaigns ORDER BY id").fetchall())
        wanted = set(states) if states is not None else None
        return [c for c in map(_campaign, rows)
                if (projects is None or c.project in projects)
                and (wanted is None or c.state in wanted)]

    def campaign_set(self, campaign_id: int, now: float, **changes: Any) -> Campaign:
        bad = set(changes) - {"state", "wave", "accepted_wave", "reason"}
        if bad:
            raise ValueError(f"cannot change {sorted(bad)} of a campaign")

        def do(db: sqlite3.Connection) -> Campaign:
            cols = ", ".join(f"{k} = ?" for k in (*changes, "updated_ts"))
            db.execute(f"UPDATE ota_campaigns SET {cols} WHERE id = ?",
                       [*changes.values(), now, campaign_id])
            row = db.execute(f"SELECT {_CAMPAIGN_COLS} FROM ota_campaigns WHERE id = ?",
                             (campaign_id,)).fetchone()
            if row is None:
                raise NotFound(f"no campaign {campaign_id}")
            return _campaign(row)
        return self._write(do)

    def campaign_devices(self, campaign_id: int) -> list[CampaignDevice]:
        rows = self._read(lambda db: db.execute(
            f"SELECT {_DEV_COLS} FROM ota_devices WHERE campaign_id = ? ORDER BY wave, device",
            (campaign_id,)).fetchall())
        return [_cdev(r) for r in rows]

    def campaign_progress(self, campaign_id: int) -> dict[str, int]:
        rows = self._read(lambda db: db.execute(
            "SELECT phase, count(*) FROM ota_devices WHERE campaign_id = ? GROUP BY phase",
            (campaign_id,)).fetchall())
        return {phase: n for phase, n in rows}

    def ota_record(self, changes: list[dict[str, Any]]) -> None:
        """Phase changes of campaign devices, in one transaction: the device's row, a
        history row each, and the version a device reported."""
        def do(db: sqlite3.Connection) -> None:
            for c in changes:
                db.execute(
                    "UPDATE ota_devices SET phase = ?, attempt = ?, result_code = ?, "
                    "detail = ?, flashed = ?, updated_ts = ? WHERE campaign_id = ? AND "
                    "device = ?", (c["phase"], c["attempt"], c["result_code"], c["detail"],
                                   int(c["flashed"]), c["ts"], c["campaign_id"], c["device"]))
                db.execute("INSERT INTO ota_history (campaign_id, device, ts, phase, detail) "
                           "VALUES (?, ?, ?, ?, ?)", (c["campaign_id"], c["device"], c["ts"],
                                                      c["phase"], c["detail"]))
                if c.get("version"):
                    # portable upsert: PostgreSQL and SQLite both take ON CONFLICT DO UPDATE
                    db.execute("INSERT INTO device_firmware (device, version, ts) VALUES "
                               "(?, ?, ?) ON CONFLICT (device) DO UPDATE SET version = "
                               "excluded.version, ts = excluded.ts",
                               (c["device"], c["version"], c["ts"]))
        if changes:
            self._write(do)

    def ota_history(self, campaign_id: int, device: str | None = None,
                    limit: int = 1000) -> list[dict[str, Any]]:
        sql = "SELECT id, device, ts, phase, detail FROM ota_history WHERE campaign_id = ?"
        args: list[Any] = [campaign_id]
        if device is not None:
            sql += " AND device = ?"
            args.append(device)
        rows = self._read(lambda db: db.execute(sql + " ORDER BY id LIMIT ?",
                                                (*args, limit)).fetchall())
        return [dict(zip(("seq", "device", "ts", "phase", "detail"), r, strict=True))
                for r in rows]

    def device_versions(self) -> dict[str, str]:
        rows = self._read(lambda db: db.execute(
            "SELECT device, version FROM device_firmware").fetchall())
        return dict(rows)
