"""Cluster mode: edge and core roles over NATS JetStream (``hub run --role edge|core``).

::

    devices ─► edge (transports) ─► JetStream stream, subjects <prefix>.in.<partition>.<device>
                  ▲   acks the device only after JetStream acked the append
                  │ commands: request on <prefix>.cmd.<device> to the edge holding its session
    core ─► one lease per partition (KV bucket, TTL) ─► one pull consumer per owned partition
            ─► a Hub per partition (presence, alarms, journal, sinks) ─► ack after its commit

* :mod:`.settings`: the ``cluster:`` section;
* :mod:`.wire`: subjects, device tokens, the server's partition function, message codec;
* :mod:`.link`: the NATS connection (backoff, fault event, metric), stream and bucket;
* :mod:`.edge`: :class:`EdgePort`, the transport port that publishes instead of journaling;
* :mod:`.core`: leases and partition workers;
* :mod:`.remote`: the command target that carries a command to whichever edge holds it,
  and the command ledger (a KV bucket that outlives the node that accepted a command);
* :mod:`.reads`: what any node's API reads of any device (history from the partition's
  owner, online state from the shared presence bucket);
* :mod:`.node`: the service tree of each role; :mod:`.store`: where the platform store opens.

Nothing here is imported by ``--role all``: the single process needs no NATS.
"""
