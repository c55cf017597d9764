"""The command target of every cluster node: a command goes as one request to
``<prefix>.cmd.<device>``, which only the edge holding the device's session answers.

The lifecycle stays the hub's (:class:`hub.commands.Commands` journals, audits and
enforces the time to live on the node that accepted the command); the edge reports the
steps (``sent``, ``queued``) and the final result to this node's inbox. The request is
published once and never repeated, so a device that moves edges mid-command sees it at
most once: its old edge ends it as failed, or nobody answers and the time to live ends
it as timed out.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson
from twisted.internet import defer

from hub.cluster.wire import device_token
from hub.journal import command_to_dict, result_from_dict
from hub.model import Command

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
                    return result_from_dict(body["result"])
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
