"""A Modbus RTU slave we did not write: pymodbus, RTU-framed over TCP (the bytes a DTU
carries). Run as a process::

    python -m tests.support.peers.modbus_slave PORT REG=VALUE ...

Holding and input registers start with the given values; it prints ``ready`` once it
listens and serves until killed. Tests change a holding register with an ordinary FC06 write
on a second connection, as a sensor reading would change."""

from __future__ import annotations

import asyncio
import sys
import warnings

from pymodbus import FramerType
from pymodbus.datastore import (
    ModbusDeviceContext,
    ModbusSequentialDataBlock,
    ModbusServerContext,
)
from pymodbus.server import ModbusTcpServer


async def main(port: int, registers: dict[int, int]) -> None:
    # in pymodbus 3.16 a block starting at 1 puts values[0] at register 0
    values = [registers.get(a, 0) for a in range(0x200)]
    device = ModbusDeviceContext(
        di=ModbusSequentialDataBlock(1, [0] * 0x200),
        co=ModbusSequentialDataBlock(1, [0] * 0x200),
        hr=ModbusSequentialDataBlock(1, list(values)),
        ir=ModbusSequentialDataBlock(1, list(values)),
    )
    context = ModbusServerContext(devices={1: device}, single=False)
    server = ModbusTcpServer(context, framer=FramerType.RTU, address=("127.0.0.1", port))
    await server.listen()  # serving from here on
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    warnings.simplefilter("ignore")  # 3.16 announces the v4 datastore; this peer is pinned
    regs = dict((int(k, 0), int(v, 0)) for k, v in (a.split("=") for a in sys.argv[2:]))
    asyncio.run(main(int(sys.argv[1]), regs))
