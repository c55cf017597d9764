"""The MQTT receive path in one process, without sockets: CPU µs per message.

    .venv/bin/python -m scripts.bench_mqtt_replay                     # 40,000 messages
    .venv/bin/python -m scripts.bench_mqtt_replay --messages 60000 --chunk 20

Pre-encoded QoS 1 PUBLISH packets of the realistic payload (nine values, 100 devices, as
``bench_mqtt --payload realistic``) are fed in chunks of ``--chunk`` messages (what one
socket read brings) to the native engine's protocol object, through the ``mqtt`` service,
json_map's block decoder and the hub's ingest into the journal, whose commits run inline
every ``--commit`` messages; the PUBACKs go to a string transport. The CPU time
(``time.process_time``) of the receive part and of the commits (with the acks) is the
minimum over ``--passes`` passes. It has no broker, sink, rollup fold or load generator
sharing the machine, so it tells a change to the path apart where ``bench_mqtt``'s
figures drown in the machine's load; ``bench_mqtt`` remains the figure of record.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from hub.testing import build_hub
from plugins.transports.mqtt import codec
from plugins.transports.mqtt.native_engine import NativeConnection, _Protocol
from plugins.transports.mqtt.service import MqttService
from scripts.mqtt_e2e import POINTS

T0_MS = 1_767_225_600_000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=40_000, help="per pass (default 40000)")
    p.add_argument("--devices", type=int, default=100)
    p.add_argument("--chunk", type=int, default=12, help="messages per read (default 12)")
    p.add_argument("--commit", type=int, default=250, help="messages per commit (default 250)")
    p.add_argument("--passes", type=int, default=3)
    args = p.parse_args()
    devices = [f"d{i:04d}" for i in range(args.devices)]
    config = {
        "presence": {"heartbeat_interval": 600, "timeout_count": 3},
        "models": {"bench": {"type": "json_map",
                             "timestamp": {"path": "ts", "format": "epoch_ms"},
                             "points": [{"path": k, "quantity": q, **({"channel": c} if c else {})}
                                        for k, (q, c) in POINTS.items()]}},
        "transports": {"broker": {"type": "mqtt", "host": "127.0.0.1", "protocol": "5"}},
        "devices": [{"id": d, "model": "bench", "transport": "broker", "address": d}
                    for d in devices],
    }
    clock = Clock()
    clock.advance(T0_MS / 1000)
    hub = build_hub(config, tempfile.mkdtemp(prefix="bench-replay-"), clock=clock)
    hub.open()
    service = MqttService(hub, "broker", hub.config.transports["broker"].options,
                          reactor=clock)
    conn = NativeConnection(service, 0)
    proto = _Protocol(conn)
    proto.transport = StringTransport()
    conn._proto = conn._current = proto
    service.connections = [conn]

    def packet(i: int) -> bytes:
        payload = json.dumps({"ts": T0_MS + i, "seq": i // args.devices, "i0": 31.5,
                              "t1": 45.2, "ua": 221.3, "ub": 220.1, "uc": 219.8, "ia": 10.2,
                              "ib": 10.4, "ic": 9.9, "pf": 0.93}, separators=(",", ":"))
        return codec.encode_publish(f"esm/{devices[i % args.devices]}/up", payload.encode(),
                                    qos=1, packet_id=i % 60000 + 1, v5=True)

    chunks = [b"".join(packet(i) for i in range(k, min(k + args.chunk, args.messages)))
              for k in range(0, args.messages, args.chunk)]
    gc.set_threshold(50_000, 20, 100)  # hub.gc's default
    gc.collect()
    gc.freeze()

    def run(chunks: list[bytes]) -> tuple[float, float]:
        receive = commit = 0.0
        since = 0
        for chunk in chunks:
            t = time.process_time()
            proto._data_received(chunk)
            receive += time.process_time() - t
            since += args.chunk
            if since >= args.commit:
                since = 0
                t = time.process_time()
                hub.journal.flush()
                commit += time.process_time() - t
        t = time.process_time()
        hub.journal.flush()
        return receive, commit + time.process_time() - t

    run(chunks[: len(chunks) // 4])  # warm-up: device ids, series, routes
    passes = [run(chunks) for _ in range(args.passes)]
    receive = min(r for r, _ in passes) / args.messages * 1e6
    commit = min(c for _, c in passes) / args.messages * 1e6
    print(f"receive (decode through append) {receive:.2f} µs/msg, commits and acks "
          f"{commit:.2f} µs/msg, total {receive + commit:.2f} µs/msg "
          f"({args.messages:,} messages x {args.passes} passes, {args.chunk} per read, "
          f"a commit per {args.commit}; {len(proto.transport.value()) // 4:,} PUBACKs)")
    hub.close()


if __name__ == "__main__":
    main()
