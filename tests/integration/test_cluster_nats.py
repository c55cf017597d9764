"""hub.cluster against a real nats-server, without hub processes: the server's partition()
mapping puts every device where :func:`hub.cluster.wire.partition_of` says (a core decides
by it which devices its partitions' presence watches)."""

from __future__ import annotations

import asyncio

import nats

from hub.cluster.settings import ClusterSettings
from hub.cluster.wire import device_token, partition_of
from tests.support.cluster import NatsServer


def test_the_servers_partition_mapping_is_partition_of(tmp_path):
    s = ClusterSettings(partitions=7)
    server = NatsServer(str(tmp_path / "nats"), s.partitions).start()
    devices = [f"efd-8612345{i:08d}" for i in range(60)] + ["电表.1", "a*b", "x>y z"]

    async def publish() -> list[str]:
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            await js.add_stream(name="HUB", subjects=["hub.in.*.*"], max_bytes=1 << 24)
            out = []
            for d in devices:
                ack = await js.publish(s.subject_in(device_token(d)), b"{}")
                out.append((await js.get_msg("HUB", ack.seq)).subject)
            return out
        finally:
            await nc.close()

    try:
        subjects = asyncio.run(publish())
    finally:
        server.stop()
    assert subjects == [f"hub.in.{partition_of(device_token(d), 7)}.{device_token(d)}"
                        for d in devices]
