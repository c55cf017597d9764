"""A relay that plays a DTU: dials the hub, registers, and copies bytes between the hub and a
real slave or meter."""

from __future__ import annotations

import socket
import threading


class DtuRelay:
    """Plays a transparent DTU: dial the hub, send the registration id, then copy bytes
    between the hub and the Modbus slave. When the slave dies the hub link stays up."""

    def __init__(self, hub_port: int, slave_port: int, ident: str):
        self.hub = socket.create_connection(("127.0.0.1", hub_port), timeout=10)
        self.slave = socket.create_connection(("127.0.0.1", slave_port), timeout=10)
        self.hub.sendall(ident.encode())
        self.threads = [threading.Thread(target=self._copy, args=(self.hub, self.slave),
                                         daemon=True),
                        threading.Thread(target=self._copy, args=(self.slave, self.hub),
                                         daemon=True)]
        for t in self.threads:
            t.start()

    @staticmethod
    def _copy(src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(None)
        while True:
            try:
                data = src.recv(4096)
            except OSError:
                return
            if not data:
                return
            try:
                dst.sendall(data)
            except OSError:
                continue  # the slave is gone: the RS-485 line is silent, the DTU stays

    def close(self) -> None:
        for s in (self.hub, self.slave):
            try:
                s.close()
            except OSError:
                pass
