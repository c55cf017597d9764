"""The life of a remote-control command: accepted → sent → succeeded / failed / timed out.

The core knows nothing of wire formats: it journals the command, hands it to the transport
service of the device (anything with a ``send_command(device, command)`` method returning
a Deferred that fires with a :class:`hub.model.CommandResult`), enforces the command's time
to live with the injected clock, journals the final result and tells the
``hub_command_finished`` observers. Every step is in the journal, so ``hub events`` and the
sinks see commands as well as data.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet import defer
from twisted.logger import Logger

from hub.audit import AuditError
from hub.model import Command, CommandResult, CommandStatus, SchemaError

if TYPE_CHECKING:
    from hub.core import Hub

_log = Logger(namespace="hub.commands")


class CommandTarget(Protocol):
    """What a transport service offers to carry commands to its devices."""

    def send_command(self, device: Any, command: Command) -> defer.Deferred: ...


class CommandError(ValueError):
    """The command cannot be accepted (unknown device, no transport, bad action)."""


def new_command_id() -> str:
    return uuid.uuid4().hex[:16]


def _audit_details(command: Command, transport: str | None = None) -> dict[str, Any]:
    """What the audit log keeps of a command (JSON only: params come from JSON already)."""
    out: dict[str, Any] = {"command_id": command.id, "action": command.action,
                           "channel": command.channel, "params": dict(command.params or {}),
                           "ttl": command.ttl}
    if transport is not None:
        out["transport"] = transport
    return out


class Commands:
    """Runs commands for one hub; transports register themselves as targets on start."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.targets: dict[str, CommandTarget] = {}
        self.pending: dict[str, Command] = {}  # accepted, not yet on the wire
        #: held by their transport until the device can hear them (a sleeping NB-IoT device)
        self.queued: set[str] = set()

    def register_target(self, transport: str, target: CommandTarget) -> None:
        self.targets[transport] = target

    def unregister_target(self, transport: str) -> None:
        self.targets.pop(transport, None)

    def execute(self, command: Command) -> defer.Deferred:
        """Start ``command``; the Deferred fires with its final :class:`CommandResult`.

        Raises :class:`CommandError` at once for a command that cannot be accepted. The
        audit entry of an accepted command is on disk before the transport gets it; if it
        cannot be written the command is refused: nothing reaches a device unaudited.
        """
        try:
            device, target = self._accept(command)
        except CommandError as e:
            self._audit_later(command, "command.refused", {"reason": str(e)})
            raise
        hub = self.hub
        try:
            hub.audit.record_now(command.requested_by or "", "command.requested",
                                 command.device, _audit_details(command, device.transport))
        except AuditError as e:
            raise CommandError(f"not sent: the audit log cannot record it ({e})") from None
        self.pending[command.id] = command
        hub.journal.append([command])
        _log.info("command {id} {action} for {device} by {by}", id=command.id,
                  action=command.action, device=command.device, by=command.requested_by or "-")
        d = defer.maybeDeferred(target.send_command, device, command)
        d.addTimeout(command.ttl, hub.clock)
        d.addCallbacks(self._result_of(command), self._failure_of(command))
        d.addCallback(self._finish, command)
        return d

    def _accept(self, command: Command) -> tuple[Any, CommandTarget]:
        try:
            command.validate()
        except SchemaError as e:
            raise CommandError(str(e)) from None
        hub = self.hub
        if command.device not in hub.registry:
            raise CommandError(f"unknown device {command.device!r}")
        device = hub.registry.get(command.device)
        target = self.targets.get(device.transport or "")
        if target is None:
            raise CommandError(f"device {device.id!r} has no running transport that carries "
                               "commands")
        return device, target

    def _audit_later(self, command: Command, action: str, extra: dict[str, Any]) -> None:
        """An entry that does not gate the command (its end, a refusal): committed with the
        next group; a failure to write it is logged and counted by the audit log."""
        d = self.hub.audit.record(command.requested_by or "", action, command.device,
                                  {**_audit_details(command), **extra})
        d.addErrback(lambda f: None)

    def resume(self, command: Command) -> defer.Deferred:
        """Take up again a command accepted before a restart that has no final result in the
        journal (it is journaled already): its transport gets it for what is left of its
        time to live; one with none left ends as timed out."""
        hub = self.hub
        now = hub.clock.seconds()
        left = command.ts + command.ttl - now
        device = hub.registry.get(command.device) if command.device in hub.registry else None
        target = self.targets.get(device.transport or "") if device is not None else None
        if left <= 0 or target is None:
            status, detail = ((CommandStatus.TIMED_OUT, "its time to live ran out while the hub "
                               "was down") if left <= 0 else
                              (CommandStatus.FAILED, "its device or transport is gone"))
            return self._finish(CommandResult(command.id, command.device, status, now, detail),
                                command)
        try:
            hub.audit.record_now(command.requested_by or "", "command.resumed", command.device,
                                 {**_audit_details(command, device.transport),
                                  "ttl_left": round(left, 3)})
        except AuditError as e:
            return self._finish(CommandResult(command.id, command.device, CommandStatus.FAILED,
                                              now, f"not resumed: the audit log cannot record "
                                              f"it ({e})"), command)
        self.pending[command.id] = command
        _log.info("command {id} {action} for {device} resumed ({left:.0f} s to live)",
                  id=command.id, action=command.action, device=command.device, left=left)
        d = defer.maybeDeferred(target.send_command, device, command)
        d.addTimeout(left, hub.clock)
        d.addCallbacks(self._result_of(command), self._failure_of(command))
        d.addCallback(self._finish, command)
        return d

    def mark_queued(self, command: Command, detail: str, again: bool = False) -> None:
        """A transport holds the command until its device can hear it: recorded as pending
        with ``detail``, and ``hub command`` answers "queued" instead of waiting.

        ``again``: the command was sent, got no answer and waits once more (the transport
        says so only for a command that has not ended); the next send is journaled again."""
        if again and command.id not in self.pending and command.id not in self.queued:
            self.pending[command.id] = command
        if command.id in self.pending and command.id not in self.queued:
            self.queued.add(command.id)
            self.hub.journal.append([CommandResult(command.id, command.device,
                                                   CommandStatus.PENDING,
                                                   self.hub.clock.seconds(), detail)])

    def mark_sent(self, command: Command) -> None:
        """A transport put the command on the wire (recorded once, for the lifecycle
        pending → sent → final)."""
        self.queued.discard(command.id)
        if self.pending.pop(command.id, None) is not None:
            self.hub.journal.append([CommandResult(command.id, command.device,
                                                   CommandStatus.SENT, self.hub.clock.seconds())])

    def _result_of(self, command: Command):
        def ok(result: CommandResult | None) -> CommandResult:
            if isinstance(result, CommandResult):
                return result
            return CommandResult(command.id, command.device, CommandStatus.SUCCEEDED,
                                 self.hub.clock.seconds())
        return ok

    def _failure_of(self, command: Command):
        def failed(f) -> CommandResult:
            now = self.hub.clock.seconds()
            if f.check(defer.TimeoutError, defer.CancelledError):
                return CommandResult(command.id, command.device, CommandStatus.TIMED_OUT, now,
                                     f"no answer within {command.ttl:g} s")
            return CommandResult(command.id, command.device, CommandStatus.FAILED, now,
                                 f"{f.type.__name__}: {f.getErrorMessage()}")
        return failed

    def _finish(self, result: CommandResult, command: Command) -> defer.Deferred:
        self.pending.pop(command.id, None)
        self.queued.discard(command.id)
        _log.info("command {id} for {device}: {status} {detail}", id=command.id,
                  device=command.device, status=result.status.value, detail=result.detail)
        self._audit_later(command, "command.finished", {"status": result.status.value,
                                                        "detail": result.detail})
        d = self.hub.journal.append([result])

        def tell(_: object) -> CommandResult:
            self.hub.plugins.notify("hub_command_finished", hub=self.hub, command=command,
                                    result=result)
            return result

        return d.addCallback(tell)
