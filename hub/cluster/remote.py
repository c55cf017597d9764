"""The command target of every cluster node: a command goes as one request to
``<prefix>.cmd.<device>``, which only the edge holding the device's session answers.

The lifecycle stays the hub's (:class:`hub.commands.Commands` journals, audits and
enforces the time to live on the node that accepted the command); the edge reports the
steps (``sent``, ``queued``) and the final result to this node's inbox. The request is
published once and never repeated, so a device that moves edges mid-command sees it at
most once: its old edge ends it as failed, or nobody answers and the time to live ends
it as timed out.

*The command ledger* — a JetStream KV bucket ``<prefix>_commands`` (one entry per command,
kept a day) that outlives the accepting node: that node writes the command when it sends
it and each step; the edge writes the result it reports (so a result reaches the ledger
even if the node waiting for it died). Every node watches the ledger
(:class:`CommandLedger`) and its API reads a command's lifecycle from it when its own
journal does not have it (:class:`hub.cluster.reads.JournalView`). A command left without
an end by a dead node is ended as timed out by a core :data:`GRACE` seconds after its time
to live ran out (:meth:`CommandLedger.sweep`): never sent again, since a trip must not
reach a device twice.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson
from twisted.internet import defer
from twisted.logger import Logger

from hub.cluster.wire import device_token
from hub.journal import command_from_dict, command_to_dict, result_from_dict, result_to_dict
from hub.model import Command, CommandResult, CommandStatus

_log = Logger(namespace="hub.cluster.remote")

if TYPE_CHECKING:
    from hub.cluster.link import NatsLink
    from hub.core import Hub


class RemoteCommandTarget:
    def __init__(self, hub: Hub, link: NatsLink) -> None:
        self.hub = hub
        self.link = link

    def send_command(self, device: Any, command: Command) -> defer.Deferred:
        loop = getattr(self.hub.clock, "_asyncioEventloop", None) or asyncio.get_event_loop()
        fut = asyncio.ensure_future(self._send(command), loop=loop)
        d = defer.Deferred(lambda _: fut.cancel())  # the hub's ttl cancels the wait
        fut.add_done_callback(lambda f: _settle(d, f))
        return d

    async def _send(self, command: Command) -> Any:
        if not self.link.connected.is_set():
            raise ConnectionError("NATS link down: the command cannot reach its edge")
        nc = self.link.nc
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        try:
            subject = self.link.settings.subject_cmd(device_token(command.device))
            await ledger_write(self.link, command, "pending")  # before any result can be
            await nc.publish(subject, orjson.dumps(command_to_dict(command)), reply=inbox)
            self.hub.metrics.inc("cluster.commands_requested")
            while True:
                msg = await sub.next_msg(timeout=command.ttl + 1)
                body = orjson.loads(msg.data)
                step = body.get("step")
                if step == "sent":
                    self.hub.command_sent(command)
                elif step == "queued":
                    self.hub.command_queued(command, body.get("detail", ""),
                                            bool(body.get("again")))
                elif step == "result":
                    result = result_from_dict(body["result"])
                    ledger_put(self.link, command, "ended", result)  # as the edge did
                    return result
        except asyncio.CancelledError:  # the hub's time to live ran out
            ledger_put(self.link, command, "ended", CommandResult(
                command.id, command.device, CommandStatus.TIMED_OUT,
                self.hub.clock.seconds(), f"no result within {command.ttl:g} s"))
            raise
        finally:
            await sub.unsubscribe()


def _settle(d: defer.Deferred, fut: asyncio.Future) -> None:
    if d.called:
        return
    if fut.cancelled():
        return
    e = fut.exception()
    if e is not None:
        d.errback(e)
    else:
        d.callback(fut.result())


#: seconds past a command's time to live before a core ends it for a node that went away
GRACE = 5.0


def ledger_bucket(prefix: str) -> str:
    return f"{prefix}_commands"


def _entry(link: NatsLink, command: Command, state: str,
           result: CommandResult | None) -> bytes:
    return orjson.dumps({"c": command_to_dict(command), "node": link.settings.node,
                         "state": state,
                         "r": result_to_dict(result) if result is not None else None})


async def ledger_write(link: NatsLink, command: Command, state: str,
                       result: CommandResult | None = None) -> None:
    """Write the command's state to the ledger and wait for JetStream's ack; a failure is
    logged, not raised (the command goes on: the ledger is what other nodes see of it)."""
    if link.ledger is None:
        return
    try:
        await link.ledger.put(command.id, _entry(link, command, state, result))
    except Exception as e:  # noqa: BLE001
        _log.warn("command {id} not in the ledger: {error}", id=command.id, error=repr(e))


def ledger_put(link: NatsLink, command: Command, state: str,
               result: CommandResult | None = None) -> None:
    """:func:`ledger_write` without waiting (an end: nothing may overwrite it)."""
    if link.ledger is None or not link.connected.is_set():
        return
    asyncio.ensure_future(ledger_write(link, command, state, result))


class CommandLedger:
    """Every node's copy of the ledger, kept by a watcher: command id -> entry."""

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Any]] = {}
        self.revisions: dict[str, int] = {}

    def apply(self, key: str, value: bytes | None, revision: int) -> None:
        if value is None:
            self.entries.pop(key, None)
            self.revisions.pop(key, None)
            return
        self.entries[key] = orjson.loads(value)
        self.revisions[key] = revision

    def records(self, device: str, since: float, until: float) -> list[tuple[int, Any]]:
        """The ledger's commands for ``device`` accepted in ``[since, until]`` and their
        results, as journal ``command_records`` gives them (sequence 0: not journaled)."""
        out: list[tuple[int, Any]] = []
        for entry in list(self.entries.values()):
            c = entry["c"]
            if c["device"] != device or not since <= c["ts"] <= until:
                continue
            out.append((0, command_from_dict(c)))
            if entry.get("r"):
                out.append((0, result_from_dict(entry["r"])))
        out.sort(key=lambda r: r[1].ts)
        return out

    def overdue(self, now: float) -> list[tuple[str, dict[str, Any], int]]:
        return [(k, e, self.revisions[k]) for k, e in list(self.entries.items())
                if e.get("r") is None and e["c"]["ts"] + e["c"]["ttl"] + GRACE < now]

    async def sweep(self, link: NatsLink, now: float) -> int:
        """End the overdue commands (compare-and-set: a node or edge that writes at the
        same moment wins, and so does another core sweeping too); how many were ended."""
        import nats.js.errors

        ended = 0
        for key, entry, revision in self.overdue(now):
            c = entry["c"]
            result = CommandResult(c["id"], c["device"], CommandStatus.TIMED_OUT, now,
                                   f"ended by {link.settings.node}: node {entry['node']} "
                                   "went away before it ended")
            body = dict(entry, state="ended", r=result_to_dict(result))
            try:
                await link.ledger.update(key, orjson.dumps(body), last=revision)
                ended += 1
            except nats.js.errors.KeyWrongLastSequenceError:
                continue
        return ended
