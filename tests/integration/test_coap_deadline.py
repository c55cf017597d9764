"""A request to a queue-mode device that went back to sleep must not hold up the next one.

aiocoap sends one confirmable request at a time to a peer (NSTART = 1) and keeps
retransmitting one whose caller gave up; with the default parameters that held every later
request to the device for about a minute and a half, and when the retransmissions ran out
aiocoap dropped the requests queued behind with it. Real UDP sockets on 127.0.0.1: a
"device" that ignores the first request (asleep) and then listens (awake again).
"""

from __future__ import annotations

import asyncio
import socket

import aiocoap
import pytest
from aiocoap import Code, Message

from plugins.transports.coap_lwm2m.coap import Deadline, deadline, exchange
from plugins.transports.coap_lwm2m.downlink_queue import NoAnswer


@pytest.mark.parametrize("timeout", [0.5, 2.0, 20.0, 300.0])
def test_the_retransmissions_end_within_the_timeout(timeout):
    t = deadline(timeout)
    assert isinstance(t, Deadline) and deadline(timeout) is t
    last = t.ACK_TIMEOUT * t.ACK_RANDOM_FACTOR * (2 ** (t.MAX_RETRANSMIT + 1) - 1)
    assert last == pytest.approx(timeout) and t.MAX_RETRANSMIT >= 1


def test_the_next_request_reaches_a_device_that_slept_through_the_first():
    async def run() -> tuple[list[bytes], Message, float, Message]:
        loop = asyncio.get_running_loop()
        dev = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dev.bind(("127.0.0.1", 0))
        dev.setblocking(False)
        ctx = await aiocoap.Context.create_client_context()
        try:
            remote = Message(code=Code.GET,
                             uri=f"coap://127.0.0.1:{dev.getsockname()[1]}/").remote
            with pytest.raises(NoAnswer):
                await exchange(ctx, remote, Code.GET, (3, 0, 3), timeout=1.0)
            asleep = []
            while True:  # what reached the socket while the device slept
                try:
                    asleep.append(dev.recv(2048))
                except BlockingIOError:
                    break
            started = loop.time()
            second = asyncio.ensure_future(exchange(ctx, remote, Code.GET, (5, 0, 3),
                                                    timeout=5.0))
            data, sender = await asyncio.wait_for(loop.sock_recvfrom(dev, 2048), 10)
            got = Message.decode(data)
            waited = loop.time() - started
            reply = Message(code=Code.CONTENT, payload=b"1")
            reply.mtype, reply.mid, reply.token = aiocoap.ACK, got.mid, got.token
            await loop.sock_sendto(dev, reply.encode(), sender)
            answer = await asyncio.wait_for(second, 10)
            return asleep, got, waited, answer
        finally:
            await ctx.shutdown()
            dev.close()

    asleep, got, waited, answer = asyncio.run(run())
    # the first request was sent and retransmitted once, no more
    assert 1 <= len(asleep) <= 2
    assert len({Message.decode(d).mid for d in asleep}) == 1
    # the second went out at once, not behind the first's retransmissions
    assert got.opt.uri_path == ("5", "0", "3") and waited < 1.0
    assert answer.code == Code.CONTENT and answer.payload == b"1"

