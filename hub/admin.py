"""The local admin socket: how ``hub command`` (and later tools) reach a running hub.

A UNIX socket at ``<state_dir>/hub.sock``, readable and writable by the hub's own user only
(mode 0600): whoever can use it could trip breakers, so file permissions are the
authentication, like Docker's or systemd's control sockets. The northbound API (with users,
roles and projects) is a separate, network-facing piece.

The protocol is one JSON object per line each way::

    → {"op": "command", "device": "efd-1", "action": "trip", "by": "alice",
       "channel": "", "params": {}, "ttl": 30, "wait": true}
    ← {"ok": true, "command_id": "…", "status": "succeeded", "detail": ""}

    → {"op": "ack", "event_id": "9f2c…", "by": "alice", "note": "breaker checked"}
    ← {"ok": true, "event_id": "9f2c…", "device": "efd-1", "seq": 1240}

    → {"op": "audit", "by": "root", "action": "user.created", "subject": "alice",
       "details": {...}}                   (``hub users``: account changes only)
    ← {"ok": true, "seq": 17}

    → {"op": "rewind_cursor", "name": "history", "seq": 1200, "by": "alice"}   (or "ts")
    ← {"ok": true, "name": "history", "from": 5000, "to": 1200, "records": 3800}

    → {"op": "ota", "act": "pause", "campaign": 7, "by": "alice", "note": ""}
    ← {"ok": true, "campaign": {...}}      (``hub ota``: start, pause, resume, cancel)

    → {"op": "ping"}
    ← {"ok": true, "hub": "hub", "seq": 1234}

A command whose transport holds it for a sleeping device (LwM2M queue mode) is answered at
once with ``"status": "queued"``; its end is in the journal.

Errors come back as ``{"ok": false, "error": "…"}``; the connection stays usable.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet import defer, endpoints
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver

from hub.audit import AuditError
from hub.commands import CommandError, new_command_id
from hub.journal import CursorError
from hub.model import Acknowledgement, Command, EventKind

if TYPE_CHECKING:
    from hub.core import Hub

_log = Logger(namespace="hub.admin")

MAX_LINE = 64 * 1024


def socket_path(state_dir: str) -> str:
    return os.path.join(state_dir, "hub.sock")


class AdminProtocol(LineOnlyReceiver):
    delimiter = b"\n"
    MAX_LENGTH = MAX_LINE

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def lineReceived(self, line: bytes) -> None:
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("expected a JSON object")
        except ValueError as e:
            self._reply({"ok": False, "error": f"not a JSON object: {e}"})
            return
        handler = getattr(self, f"op_{request.get('op')}", None)
        if handler is None:
            self._reply({"ok": False, "error": f"unknown op {request.get('op')!r}"})
            return
        d = defer.maybeDeferred(handler, request)
        d.addCallbacks(self._reply, lambda f: self._reply({"ok": False,
                                                           "error": f.getErrorMessage()}))

    def lineLengthExceeded(self, line: bytes) -> None:
        self._reply({"ok": False, "error": f"request longer than {MAX_LINE} bytes"})
        self.transport.loseConnection()

    def _reply(self, obj: dict[str, Any]) -> None:
        if self.transport is not None and self.connected:
            self.sendLine(json.dumps(obj, ensure_ascii=False).encode())

    def op_ping(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "hub": self.hub.config.name, "seq": self.hub.journal.last_seq()}

    def op_command(self, request: dict[str, Any]) -> Any:
        by = str(request.get("by") or "")
        if not by:
            return {"ok": False, "error": "who is asking? ('by' is required for the audit)"}
        try:
            ttl = float(request.get("ttl", 30))
        except (TypeError, ValueError):
            return {"ok": False, "error": "ttl must be a number of seconds"}
        params = request.get("params") or {}
        if not isinstance(params, dict):
            return {"ok": False, "error": "params must be an object"}
        command = Command(new_command_id(), str(request.get("device", "")),
                          str(request.get("action", "")), self.hub.clock.seconds(),
                          channel=str(request.get("channel") or ""), params=params,
                          requested_by=by, ttl=ttl)
        try:
            d = self.hub.commands.execute(command)
        except CommandError as e:
            return {"ok": False, "error": str(e)}
        if not request.get("wait", True):
            return {"ok": True, "command_id": command.id, "status": "pending", "detail": ""}
        if command.id in self.hub.commands.queued:  # the device sleeps: could be hours
            return {"ok": True, "command_id": command.id, "status": "queued",
                    "detail": f"waits for the device's next uplink (ttl {ttl:g} s)"}
        return d.addCallback(lambda r: {"ok": True, "command_id": command.id,
                                        "status": r.status.value, "detail": r.detail})


    def op_ack(self, request: dict[str, Any]) -> Any:
        """Record an acknowledgement in the journal (its one writer is this process); the
        answer comes after the commit."""
        by = str(request.get("by") or "")
        event_id = str(request.get("event_id") or "")
        if not by:
            return {"ok": False, "error": "who acknowledges? ('by' is required)"}
        event = self.hub.journal.event(event_id) if event_id else None
        if event is None:
            return {"ok": False, "error": f"no event with id {event_id!r} in the journal"}
        if event.kind not in (EventKind.ALARM, EventKind.FAULT):
            return {"ok": False, "error": f"event {event_id} is a {event.kind.value} event; "
                    "only alarms and faults are acknowledged"}
        ack = Acknowledgement(event_id, by, self.hub.clock.seconds(), event.device,
                              str(request.get("note") or ""))
        d = self.hub.journal.append([ack])
        audited = self.hub.audit.record(by, "event.acknowledged", event_id, {
            "device": event.device, "code": event.code, "kind": event.kind.value,
            "channel": event.channel, "note": ack.note})
        both = defer.gatherResults([d, audited], consumeErrors=True)
        return both.addCallback(lambda seqs: {"ok": True, "event_id": event_id,
                                              "device": event.device, "seq": seqs[0]})


    def op_drop_cursor(self, request: dict[str, Any]) -> dict[str, Any]:
        """Forget a cursor no running sink owns (a removed sink), so retention may pass it.
        A running sink's cursor is refused: it would only be set again, re-delivering."""
        name = str(request.get("name") or "")
        journal = self.hub.journal
        if name not in journal.cursors():
            return {"ok": False, "error": f"no cursor named {name!r}"}
        if name not in journal.stale_cursors():
            return {"ok": False, "error": f"cursor {name!r} belongs to a running sink"}
        by = str(request.get("by") or "?")
        try:  # on disk before the change, like a command's entry
            self.hub.audit.record_now(by, "cursor.dropped", name,
                                      {"cursor": name, "seq": journal.cursors()[name]})
        except AuditError as e:
            return {"ok": False, "error": f"not dropped: the audit log cannot record it ({e})"}
        journal.delete_cursor(name)
        _log.info("journal cursor {name!r} dropped by {by}", name=name, by=by)
        return {"ok": True, "name": name}


    def op_audit(self, request: dict[str, Any]) -> Any:
        """Record an account change made by ``hub users`` (it writes the platform store
        itself; the audit log has one writer, this process)."""
        action = str(request.get("action") or "")
        if not action.startswith(("user.", "role.", "alarm.", "hazard.", "firmware.")):
            return {"ok": False, "error": f"not an account or alarm action: {action!r}"}
        d = self.hub.audit.record(str(request.get("by") or "?"), action,
                                  str(request.get("subject") or ""),
                                  dict(request.get("details") or {}))
        return d.addCallback(lambda seq: {"ok": True, "seq": seq})

    def op_ota(self, request: dict[str, Any]) -> Any:
        """``hub ota start|pause|resume|cancel`` (see :mod:`hub.ota.cli`)."""
        from hub.ota.cli import admin_op

        return admin_op(self.hub, request)

    def op_rewind_cursor(self, request: dict[str, Any]) -> dict[str, Any]:
        """Move a cursor back (to ``seq``, or to the last record committed at or before
        ``ts``) so that its sink delivers everything after it again: for a database that
        lost points it had acknowledged. Bounded by what the journal still holds; audited
        before the change; the running sink is told at once and re-sends from there."""
        name = str(request.get("name") or "")
        journal = self.hub.journal
        try:
            if request.get("seq") is not None:
                seq = int(request["seq"])
            elif request.get("ts") is not None:
                seq = journal.seq_at(float(request["ts"]))
            else:
                return {"ok": False, "error": "rewind to what? give 'seq' or 'ts'"}
            current = journal.check_rewind(name, seq)
        except (CursorError, TypeError, ValueError) as e:
            return {"ok": False, "error": str(e)}
        by = str(request.get("by") or "?")
        details = {"cursor": name, "from": current, "to": seq}
        if request.get("ts") is not None:
            details["since"] = float(request["ts"])
        try:  # on disk before the change, like a command's entry
            self.hub.audit.record_now(by, "cursor.rewound", name, details)
        except AuditError as e:
            return {"ok": False, "error": f"not rewound: the audit log cannot record it ({e})"}
        journal.rewind_cursor(name, seq)
        records = journal.last_seq() - seq
        _log.info("journal cursor {name!r} rewound from seq {old} to {seq} by {by}: "
                  "{n} records to deliver again", name=name, old=current, seq=seq, by=by,
                  n=records)
        return {"ok": True, "name": name, "from": current, "to": seq, "records": records}


class AdminFactory(Factory):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def buildProtocol(self, addr: Any) -> AdminProtocol:
        return AdminProtocol(self.hub)


class AdminService(Service):
    """Listens on the admin socket while the hub runs."""

    name = "admin"

    def __init__(self, hub: Hub, reactor: Any = None) -> None:
        self.hub = hub
        self.path = socket_path(hub.config.state_dir)
        self._reactor = reactor
        self.port: Any = None

    @defer.inlineCallbacks
    def startService(self):
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        if os.path.exists(self.path):
            os.unlink(self.path)  # left by a hub that was killed; one hub per state_dir
        ep = endpoints.UNIXServerEndpoint(reactor, self.path, mode=0o600, wantPID=False)
        self.port = yield ep.listen(AdminFactory(self.hub))
        super().startService()

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        if self.port is not None:
            yield self.port.stopListening()
