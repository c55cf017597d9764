"""A monitoring-centre receiver (监控中心) for commissioning and tests.

``hub gb26875 centre --listen HOST:PORT`` accepts UITD connections (the hub's ``gb26875``
sink, or any other UITD), confirms uploads, and prints every frame it receives or sends as
one JSON object per line with the standard's Chinese field names. It can also send the
centre's own traffic after a UITD connects: reads (61-68, 81-88), clock sync (90),
initialise (89) and duty checks (91).

It is built from the standard's text only: frames, confirms (same serial and versions,
addresses swapped, command 3, empty data) and denies (the same with command 6), §6 and
Table 1. For tests it can deny or withhold the confirm of the first N uploads, to make a
UITD retransmit.

:class:`CentreSession` is the protocol logic without sockets (feed bytes, get bytes to send
and lines to print); :class:`CentreProtocol` puts it on a Twisted transport.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from twisted.internet import protocol
from twisted.internet.interfaces import IReactorTime

from plugins.sinks.gb26875 import codec as c

#: Chinese names of the object fields, as the standard's figures name them.
FIELD_NAMES = {
    "sys_type": "系统类型", "sys_addr": "系统地址", "comp_type": "部件类型",
    "comp_addr": "部件地址", "state": "状态", "description": "说明", "time": "时间标签",
    "analog_type": "模拟量类型", "value": "模拟量值", "flags": "操作标志",
    "operator": "操作员编号", "major": "主版本号", "minor": "次版本号", "count": "记录数目",
    "start": "起始时间", "reserved": "预留", "timeout_minutes": "查岗应答超时(分钟)",
}
#: which bit table names the ``state``/``flags`` field of each object class
_BIT_TABLES: dict[type, dict[int, str]] = {
    c.SystemState: c.SYSTEM_STATE_BITS, c.ComponentState: c.COMPONENT_STATE_BITS,
    c.FacilityOperation: c.OPERATION_BITS, c.UitdState: c.UITD_STATE_BITS,
    c.UitdOperation: c.UITD_OPERATION_BITS,
}
#: classes whose state word has bit 0 = 1 normal, 0 test
_NORMAL_BIT = (c.SystemState, c.ComponentState, c.UitdState)


def _when(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S")


def describe_object(obj: c.Obj) -> dict[str, Any]:
    """One information object with Chinese field names; codes also given by name."""
    out: dict[str, Any] = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        key = FIELD_NAMES.get(f.name, f.name)
        out[key] = _when(v) if isinstance(v, datetime) else v
        if f.name == "sys_type" and v in c.SYSTEM_TYPES:
            out["系统类型名称"] = c.SYSTEM_TYPES[v]
        elif f.name == "comp_type" and v in c.COMPONENT_TYPES:
            out["部件类型名称"] = c.COMPONENT_TYPES[v]
        elif f.name in ("state", "flags") and type(obj) in _BIT_TABLES:
            names = list(c.bits(v, _BIT_TABLES[type(obj)]))
            if isinstance(obj, _NORMAL_BIT):
                names.insert(0, "正常" if v & 1 else "测试")
            out[key + "位"] = names
        elif f.name == "value" and isinstance(obj, c.ComponentAnalog):
            if obj.analog_type in c.ANALOG_TYPES:
                name, unit, res = c.ANALOG_TYPES[obj.analog_type]
                out["模拟量"] = f"{name} {round(v * res, 2):g} {unit}"
            else:
                out["模拟量"] = f"自定义类型 {obj.analog_type} 原始值 {v}"
    return out


def describe_frame(frame: c.Frame) -> dict[str, Any]:
    """A frame as a dict with Chinese keys (what the centre prints)."""
    d: dict[str, Any] = {
        "业务流水号": frame.serial,
        "协议版本": f"{frame.version}.{frame.user_version}",
        "时间标签": _when(frame.time),
        "源地址": frame.source,
        "目的地址": frame.destination,
        "命令": frame.command,
        "命令名称": c.COMMAND_NAMES.get(frame.command, "用户自定义"),
        "应用数据长度": len(frame.data),
    }
    if frame.data:
        try:
            app = frame.app_data()
        except c.GBDecodeError as e:
            d["应用数据错误"] = str(e)
            d["应用数据"] = frame.data.hex(" ")
        else:
            d["类型标志"] = app.type
            d["类型名称"] = c.TYPE_NAMES.get(app.type, "")
            d["信息对象数目"] = len(app.objects)
            d["信息对象"] = [describe_object(o) for o in app.objects]
    return d


@dataclass
class CentreOptions:
    """How the centre answers. ``deny_first``/``withhold_first``: that many uploads (command
    2) are denied / left without a confirm before it confirms normally (-1: all of them)."""

    address: int = 0
    deny_first: int = 0
    withhold_first: int = 0


class CentreSession:
    """One UITD connection, without sockets.

    ``receive(data)`` returns the bytes to send back; every frame in either direction is
    passed to ``emit`` as a dict (``describe_frame`` plus ``方向`` 收/发 and ``对端``).
    The centre's own serial number starts at 0 on connect (§Table 1 serial rules).
    """

    def __init__(self, options: CentreOptions, clock: IReactorTime,
                 emit: Callable[[dict[str, Any]], None], peer: str = "") -> None:
        self.options = options
        self.clock = clock
        self.emit = emit
        self.peer = peer
        self.decoder = c.StreamDecoder()
        self.serial = 0
        self.uitd_address = 0  # learnt from the UITD's frames
        self.uploads = 0
        self.denied = 0
        self.withheld = 0
        self.confirmed = 0

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.seconds()).replace(microsecond=0)

    def _out(self, frame: c.Frame) -> bytes:
        raw = frame.encode()
        self.emit({"方向": "发", "对端": self.peer, **describe_frame(frame)})
        return raw

    def receive(self, data: bytes) -> bytes:
        out = bytearray()
        for item in self.decoder.feed(data):
            if isinstance(item, c.FrameError):
                self.emit({"方向": "收", "对端": self.peer, "帧错误": str(item),
                           "错误类型": item.kind, "片段": item.excerpt.hex(" ")})
                # deny only where the header is plausibly real (length and markers agreed);
                # a stray "@@" in noise is skipped silently, the sender's timeout covers it
                if item.header is not None and item.kind in ("checksum", "command", "time"):
                    out += self._out(item.header.reply(c.CMD_DENY, self.now()))
                continue
            out += self._frame(item)
        return bytes(out)

    def _frame(self, f: c.Frame) -> bytes:
        self.uitd_address = f.source
        self.emit({"方向": "收", "对端": self.peer, **describe_frame(f)})
        if f.command != c.CMD_SEND:
            return b""  # confirms, denies and answers to our traffic are only printed
        self.uploads += 1
        try:
            f.app_data()
        except c.GBDecodeError:
            self.denied += 1
            return self._out(f.reply(c.CMD_DENY, self.now()))
        o = self.options
        if o.deny_first < 0 or self.denied < o.deny_first:
            self.denied += 1
            return self._out(f.reply(c.CMD_DENY, self.now()))
        if o.withhold_first < 0 or self.withheld < o.withhold_first:
            self.withheld += 1
            self.emit({"方向": "收", "对端": self.peer, "说明": "按测试设置不回确认",
                       "业务流水号": f.serial})
            return b""
        self.confirmed += 1
        return self._out(f.reply(c.CMD_CONFIRM, self.now()))

    # -- the centre's own traffic ----------------------------------------------------------

    def _next_serial(self) -> int:
        s = self.serial
        self.serial = (self.serial + 1) & 0xFFFF
        return s

    def command(self, command: int, type_flag: int, objects: list[c.Obj]) -> bytes:
        """A frame from the centre to the UITD (reads go with command 4, controls with 1)."""
        data = c.encode_app_data(type_flag, objects)
        return self._out(c.Frame(self._next_serial(), command, self.now(),
                                 self.options.address, self.uitd_address, data))

    def action(self, spec: str) -> bytes:
        """``read:81``, ``read:61:SYS_TYPE:SYS_ADDR``, ``read:62:T:A:COMP_ADDR``,
        ``read:84:COUNT``, ``sync``, ``init``, ``duty:MINUTES``."""
        parts = spec.split(":")
        name, args = parts[0], [int(p, 0) for p in parts[1:]]
        if name == "sync":
            return self.command(c.CMD_CONTROL, 90, [c.ClockSync(self.now())])
        if name == "init":
            return self.command(c.CMD_CONTROL, 89, [c.Reserved()])
        if name == "duty":
            return self.command(c.CMD_CONTROL, 91, [c.DutyCheck(args[0] if args else 1)])
        if name == "read" and args and args[0] in c.READ_ANSWERS:
            t, rest = args[0], args[1:]
            cls = c.LAYOUTS[t][0]
            if cls is c.Reserved:
                obj: c.Obj = c.Reserved()
            elif cls is c.UitdRecordQuery:
                obj = c.UitdRecordQuery(rest[0] if rest else 10, datetime(2000, 1, 1))
            elif cls is c.RecordQuery:
                obj = c.RecordQuery(*(rest + [0, 0, 10])[:3], datetime(2000, 1, 1))
            elif cls is c.ComponentRef:
                obj = c.ComponentRef(*(rest + [0, 0, 0])[:3])
            else:
                obj = c.SystemRef(*(rest + [0, 0])[:2])
            return self.command(c.CMD_REQUEST, t, [obj])
        raise ValueError(f"unknown action {spec!r} (read:TYPE[:ARGS], sync, init, duty:MIN)")


class CentreProtocol(protocol.Protocol):
    """A :class:`CentreSession` on a TCP connection."""

    def __init__(self, factory: CentreFactory) -> None:
        self.factory = factory
        self.session: CentreSession | None = None

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        name = f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"
        f = self.factory
        self.session = CentreSession(f.options, f.clock, f.emit, name)
        f.sessions.append(self.session)
        f.emit({"事件": "连接", "对端": name})
        for spec in f.actions:
            f.clock.callLater(f.action_delay, self._act, spec)

    def _act(self, spec: str) -> None:
        if self.session is not None and self.transport is not None and self.connected:
            self.transport.write(self.session.action(spec))

    def dataReceived(self, data: bytes) -> None:
        assert self.session is not None
        reply = self.session.receive(data)
        if reply:
            self.transport.write(reply)

    def connectionLost(self, reason: Any = None) -> None:
        if self.session is not None:
            self.factory.emit({"事件": "断开", "对端": self.session.peer})
            self.factory.sessions.remove(self.session)


class CentreFactory(protocol.ServerFactory):
    """Accepts UITDs; ``actions`` are sent to each ``action_delay`` s after it connects."""

    def __init__(self, options: CentreOptions, clock: IReactorTime,
                 emit: Callable[[dict[str, Any]], None] | None = None,
                 actions: list[str] | None = None, action_delay: float = 0.5) -> None:
        self.options = options
        self.clock = clock
        self.emit = emit or print_json
        self.actions = actions or []
        self.action_delay = action_delay
        self.sessions: list[CentreSession] = []

    def buildProtocol(self, addr: Any) -> CentreProtocol:
        return CentreProtocol(self)


def print_json(d: dict[str, Any]) -> None:
    """One JSON object per line, Chinese as is; flushed so a reader sees it at once."""
    sys.stdout.write(json.dumps(d, ensure_ascii=False) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------------- CLI


def host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def cmd_centre(args: Any) -> int:
    from hub.cli import install_reactor

    install_reactor()
    from twisted.internet import reactor

    try:
        host, port = host_port(args.listen)
    except ValueError as e:
        print(f"--listen: {e}", file=sys.stderr)
        return 2
    for spec in args.on_connect:
        try:  # the spelling is checked before anything listens
            CentreSession(CentreOptions(), reactor, lambda d: None).action(spec)
        except (ValueError, IndexError, TypeError) as e:
            print(f"--on-connect: {e}", file=sys.stderr)
            return 2
    options = CentreOptions(address=args.address, deny_first=args.deny,
                            withhold_first=args.withhold)
    factory = CentreFactory(options, reactor, actions=args.on_connect)
    listening = reactor.listenTCP(port, factory, interface=host)
    print_json({"事件": "监听", "地址": f"{host}:{listening.getHost().port}"})
    reactor.run()
    return 0


def add_commands(subparsers: Any) -> None:
    """``hub gb26875 centre`` (the group is shared through :func:`hub.cli.command_group`)."""
    from hub.cli import command_group

    group = command_group(subparsers, "gb26875", "GB/T 26875.3 monitoring-centre tools")
    p = group.add_parser("centre", help="a monitoring centre that confirms uploads and prints "
                         "decoded frames (commissioning, tests)")
    p.add_argument("--listen", required=True, metavar="HOST:PORT",
                   help="address to listen on (port 0: any free port, printed at start)")
    p.add_argument("--address", type=lambda s: int(s, 0), default=0,
                   help="the centre's own 6-byte address (default 0)")
    p.add_argument("--deny", type=int, default=0, metavar="N",
                   help="deny the first N uploads (-1: all), to test retransmission")
    p.add_argument("--withhold", type=int, default=0, metavar="N",
                   help="send no confirm for the first N uploads (-1: none ever)")
    p.add_argument("--on-connect", action="append", default=[], metavar="ACTION",
                   help="send to each UITD after it connects: read:TYPE[:ARGS], sync, init, "
                   "duty:MINUTES (repeatable)")
    p.set_defaults(func=cmd_centre)
