"""A device of the ``line_tcp`` transport on a real socket."""

from __future__ import annotations

import json
import socket


class Device:
    """A device on a socket: registration line, then JSON frames, one reply each."""

    def __init__(self, port: int, ident: str):
        # a bound, not a wait: each reply comes after the hub's commit, which a loaded
        # machine may hold up for seconds
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.file = self.sock.makefile("rwb")
        self.send_raw(ident.encode())

    def send_raw(self, line: bytes) -> None:
        self.file.write(line + b"\n")
        self.file.flush()

    def send(self, frame: dict) -> str:
        self.send_raw(json.dumps(frame).encode())
        return self.file.readline().decode().strip()

    def close(self):
        self.file.close()
        self.sock.close()

