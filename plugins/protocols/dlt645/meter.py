"""A DL/T 645-2007 meter's side, sans-IO: request frame in, reply frame out.

For simulators (``hub simulate dtu`` playing meters) and tests. :func:`reply` answers as a
meter at ``address`` holding ``values`` (data identifier → the data bytes of its reply,
without the 33H offset: build them with :func:`plugins.protocols.dlt645.encode_value`):

* 11H read data: 91H with the data; a data identifier it lacks gets D1H with ERR bit 1 (no
  requested data). Data longer than ``frame_data`` bytes goes out in several frames: B1H
  with the first part, then 12H read subsequent data → B2H … and 92H with the last.
* 13H read address (to ``AAAAAAAAAAAA``): 93H with the address.
* 1CH trip/close: 9CH when the password level and password match, DCH with ERR bit 2
  (password wrong) otherwise. What the command asked is for the caller to act on:
  :func:`control_action` reads it from the request.
* 08H broadcast time sync and anything addressed to another meter or to the broadcast
  address: no reply (``None``), as a meter on a shared RS-485 line stays silent; so does a
  frame that does not parse.
"""

from __future__ import annotations

from collections.abc import Mapping

from hub.contracts import DecodeError
from plugins.protocols.dlt645.frame import (
    ABNORMAL,
    ADDRESS_WILDCARD,
    BROADCAST,
    CONTROL_ACTIONS,
    MORE,
    READ_ADDRESS,
    READ_DATA,
    READ_SUBSEQUENT,
    REMOTE_CONTROL,
    REPLY,
    Frame,
    address_matches,
    encode_address,
    encode_frame,
    parse_frame,
)

__all__ = ["ERR_NO_DATA", "ERR_PASSWORD", "control_action", "reply"]

ERR_OTHER, ERR_NO_DATA, ERR_PASSWORD = 0x01, 0x02, 0x04
_ACTIONS = {code: name for name, code in CONTROL_ACTIONS.items()}


def reply(request: bytes | Frame, address: str, values: Mapping[int, bytes], *,
          password: str = "000000", level: int = 2, frame_data: int = 196,
          wakeup: int = 0) -> bytes | None:
    """The reply of meter ``address`` to ``request``, or ``None`` where a meter stays
    silent. ``password`` (6 hex digits) and ``level`` (PA) are what 1CH must carry;
    ``frame_data``: data bytes per reply frame after the data identifier."""
    try:
        f = request if isinstance(request, Frame) else parse_frame(request)
    except DecodeError:
        return None
    if f.is_reply or f.address == BROADCAST or not address_matches(f.address, address):
        return None

    def answer(control: int, data: bytes = b"") -> bytes:
        return encode_frame(address, control, data, wakeup)

    def error(code: int) -> bytes:
        return answer(REPLY | ABNORMAL | f.function, bytes([code]))

    if f.function == READ_ADDRESS:
        if f.address != ADDRESS_WILDCARD or f.data:
            return error(ERR_OTHER)
        return answer(REPLY | READ_ADDRESS, encode_address(address))
    if f.function in (READ_DATA, READ_SUBSEQUENT):
        seq = 0
        if f.function == READ_SUBSEQUENT:
            if len(f.data) != 5 or f.data[4] == 0:
                return error(ERR_OTHER)
            seq = f.data[4]
        elif len(f.data) < 4:  # 11H may carry a load-record count after the DI: ignored
            return error(ERR_OTHER)
        di = int.from_bytes(f.data[:4], "little")
        data = values.get(di)
        if data is None:
            return error(ERR_NO_DATA)
        parts = [data[i:i + frame_data] for i in range(0, len(data), frame_data)] or [b""]
        if seq >= len(parts):
            return error(ERR_NO_DATA)
        control = REPLY | f.function | (MORE if seq < len(parts) - 1 else 0)
        return answer(control, f.data[:4] + parts[seq] + (bytes([seq]) if seq else b""))
    if f.function == REMOTE_CONTROL:
        expected = bytes([level]) + bytes.fromhex(password)[::-1]
        if len(f.data) != 16 or f.data[:4] != expected:
            return error(ERR_PASSWORD)
        if f.data[8] not in _ACTIONS:
            return error(ERR_OTHER)
        return answer(REPLY | REMOTE_CONTROL)
    return None  # 08H (broadcast anyway) and functions this meter does not play


def control_action(request: bytes | Frame) -> str:
    """The action (``trip``, ``close``, …) a 1CH request asks for; :class:`DecodeError`
    for another request."""
    f = request if isinstance(request, Frame) else parse_frame(request)
    if f.function != REMOTE_CONTROL or f.is_reply or len(f.data) != 16 \
            or f.data[8] not in _ACTIONS:
        raise DecodeError(f"not a 1CH request: control {f.control:02X}H", f.raw[:48], 8)
    return _ACTIONS[f.data[8]]
