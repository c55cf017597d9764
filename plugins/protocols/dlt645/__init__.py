"""DL/T 645-2007 (多功能电能表通信协议), sans-IO: the protocol of most Chinese energy meters,
multi-function and rail-mounted, behind the same 4G DTUs as Modbus detectors.

Modules, each with one job: :mod:`.frame` (addresses, checksum, requests and the replies
they accept, errors), :mod:`.values` (BCD formats and signs), :mod:`.framer` (frames out
of a byte stream) and :mod:`.meter` (a meter's side: replies to requests, for simulators
and tests). All pure: no sockets, no clock.
"""

from __future__ import annotations

from plugins.protocols.dlt645.frame import (
    BROADCAST,
    CONTROL_ACTIONS,
    ERROR_BITS,
    AddressError,
    ChecksumError,
    Dlt645DecodeError,
    EndError,
    Frame,
    LengthError,
    MeterError,
    ReadReply,
    ReplyError,
    control_reply,
    control_request,
    encode_frame,
    parse_address_reply,
    parse_frame,
    read_address_request,
    read_reply,
    read_request,
    read_subsequent_request,
    time_sync,
)
from plugins.protocols.dlt645.framer import NEED_DATA, Dlt645Framer, FrameError, scan_frames
from plugins.protocols.dlt645.values import Format, decode_value, encode_value, parse_format

__all__ = [
    "BROADCAST",
    "CONTROL_ACTIONS",
    "ERROR_BITS",
    "NEED_DATA",
    "AddressError",
    "ChecksumError",
    "Dlt645DecodeError",
    "Dlt645Framer",
    "EndError",
    "Format",
    "Frame",
    "FrameError",
    "LengthError",
    "MeterError",
    "ReadReply",
    "ReplyError",
    "control_reply",
    "control_request",
    "decode_value",
    "encode_frame",
    "encode_value",
    "parse_address_reply",
    "parse_format",
    "parse_frame",
    "read_address_request",
    "read_reply",
    "read_request",
    "read_subsequent_request",
    "scan_frames",
    "time_sync",
]
