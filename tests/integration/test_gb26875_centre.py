"""`hub gb26875 centre`: the monitoring-centre receiver, tested with the public frame."""

from __future__ import annotations

import json
import socket
from datetime import datetime

from twisted.internet import task
from twisted.internet.testing import StringTransport

from plugins.sinks.gb26875 import codec as c
from plugins.sinks.gb26875.centre import (
    CentreFactory,
    CentreOptions,
    CentreSession,
    describe_frame,
    host_port,
)
from tests.support.gb26875_centre import CentreProcess
from tests.support.gb26875_frames import PUBLIC, PUBLIC_CONFIRM

# 2020-10-22 17:13:24 local time: the centre's confirm then carries the same time label as
# the public frame, so it must equal the confirm of research note §1.8 (b) byte for byte.
WHEN = datetime(2020, 10, 22, 17, 13, 24).timestamp()


def session(**kw) -> tuple[CentreSession, list[dict]]:
    clock = task.Clock()
    clock.advance(WHEN)
    out: list[dict] = []
    return CentreSession(CentreOptions(**kw), clock, out.append, "t"), out


def test_public_frame_is_confirmed_and_printed_in_chinese():
    s, out = session()
    reply = s.receive(PUBLIC)
    assert reply == PUBLIC_CONFIRM
    got = out[0]
    assert got["方向"] == "收" and got["命令名称"] == "发送数据"
    assert got["类型名称"] == "上传建筑消防设施部件运行状态"
    obj = got["信息对象"][0]
    assert obj["说明"] == "Ａ区１层呷哺走廊" and obj["状态"] == 2
    assert obj["系统类型名称"] == "火灾报警系统" and obj["系统地址"] == 3
    assert obj["部件地址"] == 0x000600D9 and obj["时间标签"] == "2020-08-01 19:18:48"
    assert out[1]["方向"] == "发" and out[1]["命令名称"] == "确认"
    json.dumps(out, ensure_ascii=False)  # printable as is


def test_public_frame_byte_by_byte():
    s, _ = session()
    reply = b"".join(s.receive(bytes([b])) for b in PUBLIC)
    assert reply == PUBLIC_CONFIRM


def test_bad_checksum_is_denied():
    s, out = session()
    bad = bytearray(PUBLIC)
    bad[-3] ^= 0xFF
    reply = c.decode_frame(s.receive(bytes(bad)))
    assert reply.command == c.CMD_DENY and reply.serial == 0
    assert reply.destination == 0 and reply.source == 0x010203040506
    assert out[0]["错误类型"] == "checksum"


def test_deny_and_withhold_first_uploads():
    s, _ = session(deny_first=1, withhold_first=1)
    assert c.decode_frame(s.receive(PUBLIC)).command == c.CMD_DENY
    assert s.receive(PUBLIC) == b""  # withheld
    assert s.receive(PUBLIC) == PUBLIC_CONFIRM
    assert (s.denied, s.withheld, s.confirmed) == (1, 1, 1)


def test_unknown_app_data_type_is_denied():
    s, _ = session()
    f = c.Frame(5, c.CMD_SEND, datetime(2021, 1, 1), 9, 0, b"\x09\x01")
    assert c.decode_frame(s.receive(f.encode())).command == c.CMD_DENY


def test_centre_actions_use_its_own_serial_from_zero():
    s, out = session(address=7)
    s.receive(PUBLIC)  # learns the UITD's address (0 here)
    frames = [c.decode_frame(s.action(a)) for a in ("read:81", "sync", "duty:5", "init",
                                                   "read:62:1:3:9", "read:84:20")]
    assert [f.serial for f in frames] == [0, 1, 2, 3, 4, 5]
    assert [f.command for f in frames] == [4, 1, 1, 1, 4, 4]
    assert [f.app_data().type for f in frames] == [81, 90, 91, 89, 62, 84]
    assert frames[2].app_data().objects == (c.DutyCheck(5),)
    assert frames[4].app_data().objects == (c.ComponentRef(1, 3, 9),)
    assert all(f.source == 7 for f in frames)
    assert out[-1]["类型名称"] == "读用户信息传输装置操作信息记录"


def test_protocol_over_string_transport():
    clock = task.Clock()
    clock.advance(WHEN)
    out: list[dict] = []
    factory = CentreFactory(CentreOptions(), clock, out.append, actions=["read:81"],
                            action_delay=0.5)
    proto = factory.buildProtocol(None)
    tr = StringTransport()
    proto.makeConnection(tr)
    proto.dataReceived(PUBLIC)
    assert tr.value() == PUBLIC_CONFIRM
    tr.clear()
    clock.advance(0.5)
    assert c.decode_frame(tr.value()).app_data().type == 81
    proto.connectionLost()
    assert out[0]["事件"] == "连接" and out[-1]["事件"] == "断开"


def test_describe_analog_and_state_bits():
    data = c.encode_app_data(3, [c.ComponentAnalog(129, 1, 18, 2, 3, 655, datetime(2021, 1, 1))])
    d = describe_frame(c.Frame(1, 2, datetime(2021, 1, 1), data=data))
    assert d["信息对象"][0]["模拟量"] == "温度 65.5 ℃"
    data = c.encode_app_data(21, [c.UitdState(0b11, datetime(2021, 1, 1))])
    d = describe_frame(c.Frame(1, 2, datetime(2021, 1, 1), data=data))
    assert d["信息对象"][0]["状态位"] == ["正常", "火警"]


def test_host_port():
    assert host_port("127.0.0.1:0") == ("127.0.0.1", 0)
    assert host_port("[::1]:7000") == ("::1", 7000)
    assert host_port(":7000") == ("0.0.0.0", 7000)


def _recv_frame(sock: socket.socket) -> c.Frame:
    d = c.StreamDecoder()
    while True:
        chunk = sock.recv(4096)
        assert chunk, "connection closed"
        for item in d.feed(chunk):
            assert isinstance(item, c.Frame), item
            return item


def test_centre_process_confirms_the_public_frame_and_sends_duty_check():
    centre = CentreProcess("--on-connect", "duty:3", "--deny", "1")
    try:
        with socket.create_connection(("127.0.0.1", centre.port), timeout=10) as sock:
            assert centre.next()["事件"] == "连接"
            sock.sendall(PUBLIC)
            deny = _recv_frame(sock)
            assert deny.command == c.CMD_DENY and deny.serial == 0
            sock.sendall(PUBLIC)  # the retransmission
            frames = [_recv_frame(sock), _recv_frame(sock)]
            by_cmd = {f.command: f for f in frames}
            confirm = by_cmd[c.CMD_CONFIRM]
            assert (confirm.serial, confirm.source, confirm.destination) == (
                0, 0x010203040506, 0)
            assert confirm.data == b""
            duty = by_cmd[c.CMD_CONTROL]
            assert duty.app_data().objects == (c.DutyCheck(3),)
            got = centre.until(lambda d: d.get("方向") == "收")
            assert got["信息对象"][0]["说明"] == "Ａ区１层呷哺走廊"
    finally:
        centre.stop()
