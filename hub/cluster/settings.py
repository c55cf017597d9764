"""The ``cluster:`` section of the configuration: where NATS is and how the stream is cut.

Read only by ``hub run --role edge|core``; ``--role all`` (the default) ignores it, so one
configuration file can serve every role of a node. Example::

    cluster:
      nats: [nats://10.0.0.5:4222]
      node: core-1            # default: hub.name (must differ between nodes)
      partitions: 8           # must equal the server's partition() mapping (see README)
      stream: HUB
      lease_ttl_s: 3          # a dead core's partitions are taken over after this
      partition_dir: /srv/hub-partitions   # every core must see it (default <state_dir>/partitions)
      max_mb: 1024            # the stream's limits, if an edge creates it
      max_age_h: 168
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from hub.validate import Section, integer, number, string

NAME = r"^[A-Za-z0-9_-]+$"


@dataclass(frozen=True)
class ClusterSettings:
    nats: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    node: str = ""
    partitions: int = 8
    stream: str = "HUB"
    #: subjects: ``<prefix>.in.<device>`` published by edges (the server maps them to
    #: ``<prefix>.in.<partition>.<device>``) and ``<prefix>.cmd.<device>`` for commands
    prefix: str = "hub"
    lease_bucket: str = "hub_leases"
    lease_ttl: float = 3.0
    #: JetStream limits of the stream the edges create if it is missing
    max_bytes: int = 1 << 30
    max_age: float = 7 * 86400.0
    replicas: int = 1
    #: how long an edge waits for JetStream's ack before the device is not acknowledged
    publish_timeout: float = 5.0
    fetch_batch: int = 500
    #: where each partition's journal lives; it moves with the partition's lease, so every
    #: core must see the same directory (one machine, or a shared volume). "" means
    #: ``<state_dir>/partitions``
    partition_dir: str = ""

    def subject_in(self, token: str) -> str:
        return f"{self.prefix}.in.{token}"

    def subject_partition(self, partition: int) -> str:
        return f"{self.prefix}.in.{partition}.*"

    def subject_cmd(self, token: str) -> str:
        return f"{self.prefix}.cmd.{token}"

    def mapping(self) -> str:
        """The nats-server ``mappings`` line this layout needs (the server does the
        partitioning; a node never computes a partition to publish)."""
        return (f'"{self.prefix}.in.*": '
                f'"{self.prefix}.in.{{{{partition({self.partitions},1)}}}}.{{{{wildcard(1)}}}}"')


def parse_cluster(top: Section, default_node: str, state_dir: str) -> ClusterSettings | None:
    """``None`` when the file has no ``cluster:`` section."""
    if "cluster" not in top:
        top.section("cluster")  # mark it read
        return None
    s = top.section("cluster")
    raw = s.raw("nats", list(ClusterSettings.nats))
    if isinstance(raw, str):
        raw = [raw]
    if not (isinstance(raw, list) and raw and all(isinstance(u, str) for u in raw)):
        s.checker.error(s.path / "nats", "expected a NATS URL or a list of them")
        raw = list(ClusterSettings.nats)
    out = ClusterSettings(
        nats=tuple(raw),
        node=s.get("node", string(NAME, "a name of letters, digits, _ and -"), default_node),
        partitions=s.get("partitions", integer(1, 1024), ClusterSettings.partitions),
        stream=s.get("stream", string(NAME, "a stream name"), ClusterSettings.stream),
        prefix=s.get("prefix", string(NAME, "a subject token"), ClusterSettings.prefix),
        lease_bucket=s.get("lease_bucket", string(NAME, "a bucket name"),
                           ClusterSettings.lease_bucket),
        lease_ttl=s.get("lease_ttl_s", number(0.5, 600, "s"), ClusterSettings.lease_ttl),
        max_bytes=int(s.get("max_mb", integer(1, 1 << 30), 1024)) << 20,
        max_age=s.get("max_age_h", number(0.01, 24 * 3650, "h"), 168.0) * 3600,
        replicas=s.get("replicas", integer(1, 5), 1),
        publish_timeout=s.get("publish_timeout_s", number(0.1, 600, "s"), 5.0),
        fetch_batch=s.get("fetch_batch", integer(1, 100_000), 500),
        partition_dir=os.path.join(state_dir, s.get("partition_dir", string(), "partitions")),
    )
    s.finish()
    return out
