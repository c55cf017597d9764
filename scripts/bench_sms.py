"""Alarm-to-request latency of the ``sms`` sink, end to end.

A real ``hub run`` (subprocess); a device on a loopback socket (the test vendor's
``line_tcp`` transport) sends a temperature above the set point; the ``sms`` sink sends it
through the ``aliyun`` provider to a loopback Dysmsapi peer (tests/support/peers). The latency is
from the device's frame leaving the socket to the peer receiving the signed request.
Storm control is set out of the way (no summaries, no rate limits, no duplicate window)
so every alarm makes one request. The journal commits every ``commit_interval_ms`` (the
hub's default, 20 ms, unless ``--commit-interval-ms`` says otherwise; the e2e tests' 2 ms
config is not used here, so the figure is what a default installation sees)::

    .venv/bin/python -m scripts.bench_sms --alarms 50
    .venv/bin/python -m scripts.bench_sms --alarms 50 --commit-interval-ms 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from tests.support.distribution import PLUGINS, write_distribution
from tests.support.hubproc import HubProcess
from tests.support.line_device import Device
from tests.support.peers.sms_providers import AliyunPeer, aliyun_ok
from tests.support.services import free_port
from tests.support.sms_config import sms_config

ROOT = Path(__file__).resolve().parent.parent


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--alarms", type=int, default=50)
    ap.add_argument("--commit-interval-ms", type=float, default=None,
                    help="journal.commit_interval_ms (default: the hub's own default)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-sms-"))
    site = tmp / "site"
    write_distribution(site, "hubtest-vendor", {"hubtest_vendor": "hubtest_vendor"},
                       {"hubtest_vendor": (PLUGINS / "hubtest_vendor.py").read_text()})
    os.environ["PYTHONPATH"] = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    arrived: list[float] = []
    got = threading.Event()

    def answer(seen):
        arrived.append(time.monotonic())
        got.set()
        return aliyun_ok(seen)

    port = free_port()
    latencies = []
    with AliyunPeer("LTAI-test", "s3cret", answer=answer) as peer:
        config = sms_config(tmp, port, peer.url, dedup_window=0, summary_after=1000,
                            rate_limits=[])
        doc = yaml.safe_load(config.read_text(encoding="utf-8"))
        if args.commit_interval_ms is None:
            doc.pop("journal", None)  # sms_config's 2 ms is for the tests' speed
        else:
            doc["journal"] = {"commit_interval_ms": args.commit_interval_ms}
        config.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
        interval = doc.get("journal", {}).get("commit_interval_ms", "default (20)")
        hub = HubProcess(config, tmp)
        try:
            hub.wait_for("hub hub started")
            dev = Device(port, "EFD0001")
            for _ in range(args.alarms):
                got.clear()
                t0 = time.monotonic()
                dev.send_raw(b'{"temperature/T1": 91.5}')
                if not got.wait(30):
                    raise SystemExit("no request within 30 s")
                latencies.append(arrived[-1] - t0)
                dev.file.readline()
                dev.send({"temperature/T1": 25.0})  # clear (recoveries are not routed here)
                time.sleep(0.05)  # the clear's commit and the sink's read: not measured
            dev.close()
        finally:
            hub.stop()
        if peer.problems:
            raise SystemExit(f"the peer objected: {peer.problems}")
    ms = [x * 1000 for x in latencies]
    print(f"alarm-to-request latency over {len(ms)} alarms, journal commit interval "
          f"{interval} ms: p50 {percentile(ms, 50):.1f} ms, "
          f"p99 {percentile(ms, 99):.1f} ms, max {max(ms):.1f} ms, "
          f"mean {statistics.mean(ms):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
