"""Modbus RTU, the wire codec: :mod:`.rtu` (CRC, request builders, response parsers),
:mod:`.framer` (frames out of a byte stream) and :mod:`.values` (register types, byte and
word order, unit conversions). Used by the ``modbus_map`` device model, the ``tcp_dtu``
transport (through the model's :class:`hub.contracts.PolledDeviceModel`), the
``modbus_payload`` and LwM2M models and the simulators. No sockets, no clock."""
