"""Built-in plugin: ``hub simulate dtu``, simulated 4G DTUs that dial a hub's ``tcp_dtu``
listener and answer its polls (Modbus RTU slaves, DL/T 645-2007 meters, or both on one
line), for commissioning, demos, tests and benchmarks.

Each simulated DTU connects, sends its registration id (the whole first packet, as a USR
DTU in "connect with" mode does), sends its heartbeat when the line has been idle for the
heartbeat interval, and answers the requests for its slaves from
:class:`plugins.simulators.dtu.slave.SimulatedSlave` stores driven by a scenario. A DTU whose
connection is lost dials again (with a growing, jittered delay, so a restarted hub is not
hit by every DTU at once). The register logic is in :mod:`plugins.simulators.dtu.slave`; this
module is the Twisted client and the command line::

    hub simulate dtu --connect 127.0.0.1:9000 --id 861234567890000 --count 100 \\
        --map conf/devices/efd-example.yaml --slaves 1,2 --scenario overheat --period 120

    # a mixed line: a detector (slave 1) and a meter behind each DTU, voltages going over
    hub simulate dtu --connect 127.0.0.1:9000 --id 861234567890000 \
        --map conf/devices/efd-example.yaml --slaves 1 \
        --meter-map conf/devices/dlt645-meter-example.yaml --meters 000000000161 \
        --meter-password 123456 --episode overvoltage --period 120

    # meters only
    hub simulate dtu --connect 127.0.0.1:9000 --id 861234567890000 --slaves none \
        --meter-map conf/devices/dlt645-meter-example.yaml --meters 000000000161,000000000162

``--count N`` gives ids ``ID``, ``ID+1``, ... (the trailing digits of ``ID`` are counted
up, keeping their width). A status line is printed every ``--status-interval`` seconds;
SIGINT or SIGTERM (or ``--duration``) closes every connection and exits with status 0.
"""

from __future__ import annotations

import argparse
import gc
import random
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ClientFactory, Protocol

from hub import hookimpl
from plugins.simulators.cli_args import add_run_options, endpoint, positive, simulate_parser
from plugins.simulators.dtu.meter import MeterLayout, SimulatedMeter
from plugins.simulators.dtu.slave import (
    EPISODES,
    SCENARIOS,
    DtuLine,
    Scenario,
    SimulatedSlave,
    SlaveLayout,
)

__all__ = ["Fleet", "FleetOptions", "SimulatedDtu", "dtu_ids", "hub_add_commands"]

#: seconds a DTU waits before dialling again after an unplanned loss; doubles up to the cap
RETRY_FIRST, RETRY_CAP = 1.0, 30.0
LAG_PROBE = 0.05  # s between two probes of this process's own event-loop delay


def dtu_ids(first: str, count: int) -> list[str]:
    """``count`` registration ids from ``first``, counting up its trailing digits and keeping
    their width (``861234567890000`` × 3 → ``…000``, ``…001``, ``…002``)."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if count == 1:
        return [first]
    m = re.search(r"\d+$", first)
    if m is None:
        raise ValueError(f"id {first!r} has no trailing digits to count up for --count {count}")
    head, digits = first[:m.start()], m.group()
    start = int(digits)
    if len(str(start + count - 1)) > len(digits):
        raise ValueError(f"{count} ids from {first!r} overflow its {len(digits)} digits")
    return [f"{head}{start + i:0{len(digits)}d}" for i in range(count)]


@dataclass(frozen=True)
class FleetOptions:
    """What every simulated DTU of a run shares."""

    host: str
    port: int
    ids: tuple[str, ...]
    layout: SlaveLayout | None
    slaves: tuple[int, ...] = (1,)
    scenario: Scenario = Scenario()
    heartbeat: bytes = b""
    heartbeat_interval: float = 30.0
    seed: int = 0
    ramp: float = 500.0  # connections started per second
    bind: str | None = None  # local address to dial from (more ephemeral ports on loopback)
    meter_layout: MeterLayout | None = None
    meters: tuple[str, ...] = ()  # DL/T 645 meter addresses on each DTU's line
    meter_password: str = "000000"


class SimulatedDtu:
    """One DTU: its id, the slaves on its line, its connection (if any) and its retries."""

    def __init__(self, fleet: Fleet, ident: str, line: DtuLine) -> None:
        self.fleet = fleet
        self.ident = ident
        self.line = line
        self.protocol: DtuClientProtocol | None = None
        self.connector: Any = None
        self.failures = 0  # consecutive, for the back-off
        self.retry: IDelayedCall | None = None

    def connect(self) -> None:
        self.retry = None
        if self.fleet.stopping:
            return
        if self.connector is None:
            f = self.fleet
            bind = (f.options.bind, 0) if f.options.bind else None
            self.connector = f.reactor.connectTCP(f.options.host, f.options.port,
                                                  DtuClientFactory(self), timeout=30,
                                                  bindAddress=bind)
        else:
            self.connector.connect()

    def again(self, delay: float) -> None:
        if not self.fleet.stopping:
            self.retry = self.fleet.reactor.callLater(delay, self.connect)


class DtuClientProtocol(Protocol):
    """The socket of one simulated DTU: id first, then answers and heartbeats."""

    def __init__(self, dtu: SimulatedDtu) -> None:
        self.dtu = dtu
        self.fleet = dtu.fleet
        self.last_sent = 0.0
        self.dropping = False
        self._timers: list[IDelayedCall] = []

    def connectionMade(self) -> None:
        fleet, clock = self.fleet, self.fleet.reactor
        self.dtu.protocol = self
        self.dtu.failures = 0
        fleet.connected.add(self)
        fleet.connects += 1
        self.transport.write(self.dtu.ident.encode("ascii"))
        self.last_sent = clock.seconds()
        opts = fleet.options
        if opts.heartbeat:
            self._timers.append(clock.callLater(opts.heartbeat_interval, self._heartbeat))
        if opts.scenario.connected_for is not None:
            self._timers.append(clock.callLater(opts.scenario.connected_for, self._drop))

    def dataReceived(self, data: bytes) -> None:
        fleet = self.fleet
        line = self.dtu.line
        before = line.requests, line.answered
        now = fleet.reactor.seconds()
        answers = line.receive(data, now - fleet.started)
        fleet.count_requests(line.requests - before[0], now)
        fleet.answered += line.answered - before[1]
        if answers:
            self.transport.write(b"".join(answers))
            self.last_sent = fleet.reactor.seconds()

    def _heartbeat(self) -> None:
        # Like a USR DTU: a network heartbeat only when nothing went up for the interval.
        clock, interval = self.fleet.reactor, self.fleet.options.heartbeat_interval
        idle = clock.seconds() - self.last_sent
        if idle >= interval * 0.999:
            self.transport.write(self.fleet.options.heartbeat)
            self.last_sent = clock.seconds()
            self.fleet.heartbeats += 1
            idle = 0.0
        self._timers = [t for t in self._timers if t.active()]
        self._timers.append(clock.callLater(interval - idle, self._heartbeat))

    def _drop(self) -> None:
        self.dropping = True
        self.fleet.drops += 1
        self.transport.loseConnection()

    def connectionLost(self, reason: Any = None) -> None:
        for t in self._timers:
            if t.active():
                t.cancel()
        self._timers.clear()
        self.fleet.connected.discard(self)
        if self.dtu.protocol is self:
            self.dtu.protocol = None
        self.fleet.lost(self)


class DtuClientFactory(ClientFactory):
    """One per simulated DTU, so Twisted's connector can dial the same DTU again."""

    def __init__(self, dtu: SimulatedDtu) -> None:
        self.dtu = dtu

    def buildProtocol(self, addr: Any) -> DtuClientProtocol:
        p = DtuClientProtocol(self.dtu)
        p.factory = self
        return p

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
        fleet = self.dtu.fleet
        fleet.failed += 1
        why = type(getattr(reason, "value", reason)).__name__
        fleet.failures[why] = fleet.failures.get(why, 0) + 1
        self.dtu.fleet.retry_later(self.dtu)


class Fleet:
    """Every simulated DTU of one run, on ``reactor`` (an ``IReactorTCP`` and
    ``IReactorTime``; tests may pass a memory reactor)."""

    def __init__(self, options: FleetOptions, reactor: Any,
                 out: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.reactor = reactor
        self.out = out or (lambda line: print(line, flush=True))
        self.rng = random.Random(options.seed)
        self.dtus = [SimulatedDtu(self, ident, self._line(ident)) for ident in options.ids]
        self.connected: set[DtuClientProtocol] = set()
        self.started = reactor.seconds()
        self.stopping = False
        self._all_closed: defer.Deferred | None = None
        self.connects = self.drops = self.failed = self.unplanned = self.heartbeats = 0
        self.requests = self.answered = 0
        #: failed dials by exception (ConnectionRefusedError: nothing listens; TCPTimedOutError:
        #: the hub's accept backlog overflowed and SYNs went unanswered)
        self.failures: dict[str, int] = {}
        self._last = (self.started, 0)
        # how bursty the hub's requests are, and whether this process keeps up with them
        self._tick = (0, 0)  # (100 ms slot, requests in it)
        self.peak_per_tick = 0
        self.max_lag = 0.0
        self._lag_timer: IDelayedCall | None = None

    def _line(self, ident: str) -> DtuLine:
        o = self.options
        seed = f"{o.seed}/{ident}"
        slaves = [SimulatedSlave(o.layout, s, o.scenario, seed=seed) for s in o.slaves] \
            if o.layout is not None else []
        meters = [SimulatedMeter(o.meter_layout, a, o.scenario, seed, o.meter_password)
                  for a in o.meters] if o.meter_layout is not None else []
        return DtuLine(slaves, meters)

    def start(self) -> None:
        """Dial every DTU, ``ramp`` per second (a burst of thousands of SYNs would overflow
        the hub's listen backlog and stall in SYN retransmits)."""
        self.started = self.reactor.seconds()
        self._last = (self.started, 0)
        self._lag_timer = self.reactor.callLater(LAG_PROBE, self._probe, self.started + LAG_PROBE)
        for i, dtu in enumerate(self.dtus):
            dtu.retry = self.reactor.callLater(i / self.options.ramp, dtu.connect)

    def count_requests(self, n: int, now: float) -> None:
        self.requests += n
        slot, count = self._tick
        current = int(now * 10)
        count = count + n if current == slot else n
        self._tick = (current, count)
        self.peak_per_tick = max(self.peak_per_tick, count)

    def _probe(self, due: float) -> None:
        # A timer firing late means this process's reactor was busy: its answers were late too.
        now = self.reactor.seconds()
        self.max_lag = max(self.max_lag, now - due)
        self._lag_timer = self.reactor.callLater(LAG_PROBE, self._probe, now + LAG_PROBE)

    def lost(self, protocol: DtuClientProtocol) -> None:
        if self.stopping:
            if not self.connected and self._all_closed is not None:
                d, self._all_closed = self._all_closed, None
                d.callback(None)
            return
        if protocol.dropping:
            protocol.dtu.again(self.options.scenario.reconnect_delay)
        else:
            self.unplanned += 1
            self.retry_later(protocol.dtu)

    def retry_later(self, dtu: SimulatedDtu) -> None:
        delay = min(RETRY_CAP, RETRY_FIRST * 2 ** dtu.failures)
        dtu.failures += 1
        dtu.again(delay * self.rng.uniform(0.5, 1.0))

    def status_line(self) -> str:
        """One line: connections held, requests answered in all and per second since the
        previous line, and the connection events."""
        now = self.reactor.seconds()
        then, answered_then = self._last
        rate = (self.answered - answered_then) / (now - then) if now > then else 0.0
        self._last = (now, self.answered)
        peak, lag = self.peak_per_tick, self.max_lag
        self.peak_per_tick, self.max_lag = 0, 0.0
        why = ", ".join(f"{k} {v}" for k, v in sorted(self.failures.items()))
        return (f"dtu-sim: {len(self.connected)}/{len(self.dtus)} connected, "
                f"{self.answered} requests answered ({rate:.1f}/s), "
                f"{self.requests - self.answered} unanswered, {self.connects} connects, "
                f"{self.drops} drops, {self.unplanned} lost, {self.failed} failed dials"
                f"{f' ({why})' if why else ''}, {self.heartbeats} heartbeats; "
                f"peak {peak} requests/100 ms, loop lag ≤ {lag * 1000:.0f} ms")

    def stop(self, timeout: float = 5.0) -> defer.Deferred:
        """Stop dialling and close every connection; fires once all are closed (or after
        ``timeout`` seconds)."""
        self.stopping = True
        if self._lag_timer is not None and self._lag_timer.active():
            self._lag_timer.cancel()
        for dtu in self.dtus:
            if dtu.retry is not None and dtu.retry.active():
                dtu.retry.cancel()
            if getattr(dtu.connector, "state", None) == "connecting":  # a dial in progress
                dtu.connector.stopConnecting()
        if not self.connected:
            return defer.succeed(None)
        self._all_closed = d = defer.Deferred()
        for p in list(self.connected):
            p.transport.loseConnection()
        timer = self.reactor.callLater(timeout, lambda: d.called or d.callback(None))
        d.addBoth(lambda r: timer.cancel() if timer.active() else None)
        return d


# ---------------------------------------------------------------------------- CLI


def _slaves(text: str) -> tuple[int, ...]:
    if text == "none":  # a line of meters only
        return ()
    try:
        slaves = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list like 1,2,3") from None
    if not slaves or any(not 1 <= s <= 247 for s in slaves) or len(set(slaves)) != len(slaves):
        raise argparse.ArgumentTypeError(f"{text!r}: slave addresses are distinct, in 1..247")
    return slaves


def _meters(text: str) -> tuple[str, ...]:
    from plugins.protocols.dlt645.frame import is_address

    meters = tuple(a.strip().upper() for a in text.split(",") if a.strip())
    if not meters or len(set(meters)) != len(meters) \
            or not all(is_address(a) and a.isdigit() for a in meters):
        raise argparse.ArgumentTypeError(f"{text!r}: meter addresses are distinct, of 12 "
                                         "digits (e.g. 000000000161,000000000162)")
    return meters


def _password(text: str) -> str:
    if len(text) != 6 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise argparse.ArgumentTypeError("a meter password is 6 hexadecimal digits")
    return text


def _hex(text: str) -> bytes:
    try:
        data = bytes.fromhex(text.removeprefix("hex:"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not hex bytes (e.g. 'FE FE')") from None
    if not 1 <= len(data) <= 40:  # what USR DTUs allow
        raise argparse.ArgumentTypeError("a heartbeat is 1..40 bytes")
    return data


def cmd_simulate_dtu(args: argparse.Namespace) -> int:
    """``hub simulate dtu``: run the fleet until a signal or ``--duration``."""
    from hub.cli import install_reactor
    from hub.validate import ConfigError
    from plugins.devices.dlt645.datamap import load_map as load_meter_map
    from plugins.devices.modbus.registermap import load_map

    regmap = datamap = None
    try:
        if not (args.id.isascii() and args.id.isprintable() and 0 < len(args.id) <= 40):
            raise ValueError(f"id {args.id!r} is not 1..40 printable ASCII characters")
        if args.slaves and not args.map:
            raise ValueError("--map (the slaves' register map) is required with --slaves "
                             "(--slaves none for a line of meters only)")
        if bool(args.meters) != bool(args.meter_map):
            raise ValueError("--meters and --meter-map go together")
        if not args.slaves and not args.meters:
            raise ValueError("nothing on the line: give --slaves or --meters")
        if args.slaves:
            regmap = load_map(args.map)
        if args.meters:
            datamap = load_meter_map(args.meter_map)
        ids = dtu_ids(args.id, args.count)
    except (ConfigError, ValueError) as e:
        print(f"hub simulate dtu: {e}", file=sys.stderr)
        return 2
    install_reactor()
    from twisted.internet import reactor
    from twisted.internet.task import LoopingCall

    host, port = args.connect
    options = FleetOptions(
        host=host, port=port, ids=tuple(ids),
        layout=SlaveLayout(regmap) if regmap is not None else None, slaves=args.slaves,
        meter_layout=MeterLayout(datamap) if datamap is not None else None,
        meters=args.meters or (), meter_password=args.meter_password,
        scenario=Scenario(args.scenario, args.period, args.episode or ""),
        heartbeat=args.heartbeat or b"",
        heartbeat_interval=args.heartbeat_interval, seed=args.seed, ramp=args.ramp,
        bind=args.bind)
    fleet = Fleet(options, reactor)
    frozen = [False]

    def report() -> None:
        fleet.out(fleet.status_line())
        if not frozen[0] and len(fleet.connected) == len(fleet.dtus):
            # Everything built so far lives for the whole run. Without this, each full
            # collection walks every slave and connection (~200 ms with 10,000 DTUs), during
            # which no answer goes out: the hub would measure our pauses as its round trips.
            gc.collect()
            gc.freeze()
            frozen[0] = True

    gc.freeze()  # the fleet (layouts, slaves, stores) was just built
    status = LoopingCall(report)

    def shutdown() -> defer.Deferred:
        if status.running:
            status.stop()
        return fleet.stop()

    reactor.callWhenRunning(fleet.start)
    reactor.callWhenRunning(status.start, args.status_interval, now=False)
    if args.duration:
        reactor.callLater(args.duration, reactor.stop)
    reactor.addSystemEventTrigger("before", "shutdown", shutdown)
    line = []
    if regmap is not None:
        line.append(f"slaves {','.join(map(str, args.slaves))} of {regmap.name or args.map}")
    if datamap is not None:
        line.append(f"meters {','.join(args.meters)} of {datamap.name or args.meter_map}")
    print(f"dtu-sim: {len(ids)} DTUs ({ids[0]}..{ids[-1]}) with {' and '.join(line)}, "
          f"scenario {args.scenario}{' + ' + args.episode if args.episode else ''}, "
          f"dialling {host}:{port}", flush=True)
    reactor.run()  # SIGINT and SIGTERM stop it, which runs shutdown() first
    fleet.out(fleet.status_line())
    return 0


@hookimpl
def hub_add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = simulate_parser(
        subparsers, "dtu", help="simulated 4G DTUs with Modbus RTU slaves and DL/T 645 "
        "meters behind them",
        description="Simulated 4G DTUs that dial a tcp_dtu listener, register, send "
        "heartbeats and answer Modbus RTU polls from a register map and DL/T 645-2007 reads "
        f"from a data-identifier map, with a scenario ({', '.join(SCENARIOS)}).")
    p.add_argument("--connect", required=True, type=endpoint, metavar="HOST:PORT",
                   help="the hub's tcp_dtu listener")
    p.add_argument("--id", required=True, help="registration id of the first DTU (an IMEI)")
    p.add_argument("--map", metavar="FILE", help="register map of the Modbus slaves")
    p.add_argument("--count", type=int, default=1, help="DTUs to simulate (default 1)")
    p.add_argument("--slaves", type=_slaves, default=(1,), metavar="1,2",
                   help="Modbus slave addresses behind each DTU (default 1; none: no slave)")
    p.add_argument("--meters", type=_meters, metavar="ADDR,ADDR",
                   help="DL/T 645 meter addresses (12 digits) behind each DTU")
    p.add_argument("--meter-map", metavar="FILE", help="data-identifier map of the meters")
    p.add_argument("--meter-password", type=_password, default="000000", metavar="HEX",
                   help="the meters' password for 1CH trip/close (default 000000)")
    p.add_argument("--scenario", choices=SCENARIOS, default="normal")
    p.add_argument("--episode", choices=EPISODES,
                   help="an episode on top of the scenario (overvoltage: every phase voltage "
                   "up to 280 V at mid-period)")
    p.add_argument("--period", type=positive, default=60.0, metavar="S",
                   help="scenario period in seconds (default 60)")
    p.add_argument("--heartbeat", type=_hex, metavar="HEX",
                   help="heartbeat bytes sent when the line is idle (default: none)")
    p.add_argument("--heartbeat-interval", type=positive, default=30.0, metavar="S",
                   help="seconds of idle line before a heartbeat (default 30)")
    p.add_argument("--seed", type=int, default=0, help="seed of the values' wobble")
    p.add_argument("--ramp", type=positive, default=500.0, metavar="N",
                   help="connections started per second (default 500)")
    p.add_argument("--bind", metavar="ADDR", help="local address to dial from")
    add_run_options(p)
    p.set_defaults(func=cmd_simulate_dtu)

