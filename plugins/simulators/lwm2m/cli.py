"""Built-in plugin: ``hub simulate lwm2m``, NB-IoT electrical-fire detectors that register
with a LwM2M server (the hub's ``coap_lwm2m`` transport), answer its reads, observes, writes
and executes, send notifications, and in queue mode sleep and wake::

    hub simulate lwm2m --server 127.0.0.1:5683 --count 100 --scenario overheat
    hub simulate lwm2m --server 127.0.0.1:5683 --count 10 --queue-mode --window 10 \\
        --update-interval 60 --format senml

Endpoints are ``urn:imei:<IMEI>`` with IMEIs from ``--imei-base`` up. The objects, the
scenarios and queue mode are described in :mod:`plugins.simulators.lwm2m`. A status line
goes to stdout every ``--status-interval`` s; SIGINT, SIGTERM or ``--duration`` de-registers
every endpoint and exits with status 0, after a last line ``lwm2m-sim: summary {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import signal
import sys
import time

from hub import hookimpl
from plugins.simulators.cli_args import (
    add_run_options,
    endpoint,
    non_negative,
    positive,
    simulate_parser,
)

__all__ = ["hub_add_commands"]

FORMATS = {"tlv": 11542, "senml": 110, "senml-cbor": 112}


async def run_fleet(args: argparse.Namespace) -> int:
    from plugins.simulators.lwm2m.endpoint import EndpointOptions
    from plugins.simulators.lwm2m.firmware import plan_behaviours
    from plugins.simulators.lwm2m.fleet import Fleet, imeis
    from plugins.simulators.scenario import Ramp, Scenario

    try:
        ids = imeis(args.imei_base, args.count)
        ramp = Ramp(args.ramp_delay, args.ramp_up, args.ramp_hold, args.ramp_down,
                    args.ramp_every)
        options = EndpointOptions(
            server=args.server, lifetime=args.lifetime, interval=args.interval,
            content_format=FORMATS[args.format], queue=args.queue_mode,
            update_interval=args.update_interval, window=args.window, bind_host=args.bind,
            confirmable=not args.non)
    except ValueError as e:
        print(f"hub simulate lwm2m: {e}", file=sys.stderr)
        return 2
    fleet = Fleet(options, ids, lambda imei: Scenario(args.scenario, ramp, imei),
                  ramp=args.ramp, concurrency=args.concurrency)
    fleet.set_firmware(args.fw_version, plan_behaviours(
        len(ids), args.fw_drop_rate, args.fw_reject_rate, args.fw_reject_code,
        args.fw_drop_after, args.fw_sleep))
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    print(f"lwm2m-sim: {len(ids)} endpoints (urn:imei:{ids[0]}..{ids[-1]}), scenario "
          f"{args.scenario}, {args.format}, {'queue mode, ' if args.queue_mode else ''}"
          f"server {args.server[0]}:{args.server[1]}", flush=True)
    await fleet.open()
    gc.freeze()  # the endpoints and their sockets live for the whole run
    if args.start_at is not None:
        # several load processes begin together, whenever each finished starting up
        await asyncio.sleep(max(0.0, args.start_at - time.time()))
    starting = asyncio.create_task(fleet.start())

    async def status() -> None:
        while True:
            await asyncio.sleep(args.status_interval)
            print(fleet.status_line(), flush=True)

    async def freeze() -> None:
        # Each observation costs aiocoap about a hundred long-lived objects (pipes, tasks,
        # closures, its first messages): 1.5 million with 1,000 endpoints of 15, and every
        # full collection walked them all, up to 1.3 s in which no notification went out
        # (the bench took those pauses for the hub's latency). Whenever the observations
        # have grown and then held for a second, what exists leaves the collector's sight.
        last = frozen = 0
        while True:
            await asyncio.sleep(1.0)
            now = fleet.stats.observations
            if now == last and now > frozen * 1.05:
                gc.collect()
                gc.freeze()
                frozen = now
                print(f"lwm2m-sim: {gc.get_freeze_count()} objects frozen ({now} "
                      "observations)", flush=True)
            last = now

    reporter = asyncio.create_task(status())
    freezer = asyncio.create_task(freeze())
    try:
        await asyncio.wait_for(done.wait(), args.duration)
    except TimeoutError:
        pass
    reporter.cancel()
    freezer.cancel()
    starting.cancel()
    await fleet.stop()
    print(fleet.status_line(), flush=True)
    print(f"lwm2m-sim: summary {json.dumps(fleet.summary())}", flush=True)
    return 0


def cmd_simulate_lwm2m(args: argparse.Namespace) -> int:
    import logging

    # aiocoap logs every retransmission and unknown peer at INFO; a load generator would
    # drown its own status lines
    logging.basicConfig(level=logging.WARNING if args.verbose else logging.ERROR)
    return asyncio.run(run_fleet(args))


@hookimpl
def hub_add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = simulate_parser(
        subparsers, "lwm2m", help="simulated NB-IoT detectors speaking LwM2M over CoAP",
        description="Simulated NB-IoT electrical-fire detectors (aiocoap LwM2M clients) that "
        "register with a LwM2M server, answer reads/observes/writes/executes, notify, and in "
        "queue mode sleep between updates.")
    p.add_argument("--server", required=True, type=endpoint, metavar="HOST:PORT",
                   help="the hub's coap_lwm2m transport")
    p.add_argument("--count", type=int, default=1, help="endpoints to simulate (default 1)")
    p.add_argument("--imei-base", type=int, default=861234567890000, metavar="IMEI",
                   help="IMEI of the first endpoint (default 861234567890000)")
    p.add_argument("--scenario", choices=("normal", "overheat", "leakage"), default="normal")
    p.add_argument("--ramp-delay", type=non_negative, default=10.0, metavar="S",
                   help="seconds before the scenario's excursion starts (default 10)")
    p.add_argument("--ramp-up", type=non_negative, default=30.0, metavar="S",
                   help="seconds the excursion climbs (default 30)")
    p.add_argument("--ramp-hold", type=non_negative, default=30.0, metavar="S",
                   help="seconds at its peak (default 30)")
    p.add_argument("--ramp-down", type=non_negative, default=30.0, metavar="S",
                   help="seconds it falls back (default 30)")
    p.add_argument("--ramp-every", type=non_negative, default=300.0, metavar="S",
                   help="the excursion repeats every S seconds; 0: once (default 300)")
    p.add_argument("--format", choices=tuple(FORMATS), default="tlv",
                   help="content format of answers when the request has no Accept "
                   "(default tlv)")
    p.add_argument("--interval", type=positive, default=10.0, metavar="S",
                   help="seconds between samples; observed values notify at least this "
                   "often (default 10)")
    p.add_argument("--lifetime", type=int, default=300, metavar="S",
                   help="registration lifetime; Updates every half of it (default 300)")
    p.add_argument("--queue-mode", action="store_true",
                   help="sleep between updates (LwM2M queue mode)")
    p.add_argument("--update-interval", type=positive, default=60.0, metavar="S",
                   help="queue mode: seconds between wake-ups with an Update (default 60)")
    p.add_argument("--window", type=positive, default=10.0, metavar="S",
                   help="queue mode: seconds it receives after it last sent (default 10)")
    p.add_argument("--non", action="store_true",
                   help="send notifications non-confirmable (default confirmable)")
    p.add_argument("--ramp", type=positive, default=200.0, metavar="N",
                   help="registrations started per second (default 200)")
    p.add_argument("--concurrency", type=int, default=64, metavar="N",
                   help="registrations in flight at most (default 64)")
    p.add_argument("--bind", default="127.0.0.1", metavar="ADDR",
                   help="local address of the endpoints' sockets (default 127.0.0.1)")
    p.add_argument("--start-at", type=positive, metavar="EPOCH",
                   help="open the sockets, then start registering at this wall-clock time "
                   "(Unix seconds), to line up several simulator processes")
    p.add_argument("--fw-version", default="1.0.0", metavar="V",
                   help="firmware version the endpoints run at start, /3/0/3 (default 1.0.0)")
    p.add_argument("--fw-drop-rate", type=fraction, default=0.0, metavar="SHARE",
                   help="share of endpoints that sleep in the middle of a firmware transfer "
                   "once, then resume (default 0)")
    p.add_argument("--fw-drop-after", type=int, default=2, metavar="N",
                   help="blocks received before such an endpoint sleeps (default 2)")
    p.add_argument("--fw-sleep", type=positive, default=5.0, metavar="S",
                   help="seconds it sleeps (default 5)")
    p.add_argument("--fw-reject-rate", type=fraction, default=0.0, metavar="SHARE",
                   help="share of endpoints that refuse every firmware package (default 0)")
    p.add_argument("--fw-reject-code", type=int, default=5, choices=range(2, 12),
                   metavar="CODE", help="the /5/0/5 result they report (default 5, "
                   "integrity check failure)")
    add_run_options(p)
    p.add_argument("--verbose", action="store_true", help="show aiocoap's warnings")
    p.set_defaults(func=cmd_simulate_lwm2m)


def fraction(text: str) -> float:
    x = float(text)
    if not 0 <= x <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a share between 0 and 1")
    return x
