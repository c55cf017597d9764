"""The tamper-evident audit log: who asked the hub to do what, hash-chained and signed.

* :mod:`hub.audit.chain`: the canonical encoding, the chain and its verification (no I/O)
* :mod:`hub.audit.keys`: the Ed25519 checkpoint key
* :mod:`hub.audit.store`: the SQLite file the hub writes and ``hub audit`` reads
"""

from hub.audit.chain import ACTIONS, Report, canonical, verify
from hub.audit.keys import AuditKeyError, load_or_create, load_public, public_path
from hub.audit.store import AuditError, AuditLog, read_snapshot

__all__ = ["ACTIONS", "AuditError", "AuditKeyError", "AuditLog", "Report", "canonical",
           "load_or_create", "load_public", "public_path", "read_snapshot", "verify"]
