"""Reading a hub's audit log back as rows."""

from __future__ import annotations

import json
import sqlite3


def audit_rows(hub):
    db = sqlite3.connect(hub.audit.path)
    rows = [(r[0], r[1], r[2], json.loads(r[3])["details"]) for r in
            db.execute("SELECT actor, action, subject, body FROM entries ORDER BY seq")]
    db.close()
    return rows

