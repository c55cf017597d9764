"""DL/T 645 test fixtures: the example map, reply values, and the PyPI dlt645 meter filled
with them."""

from __future__ import annotations

from pathlib import Path

from plugins.devices.dlt645 import load_map
from tests.support.dlt645_values import bcd

EXAMPLE = "conf/devices/dlt645-meter-example.yaml"


VALUES = {
    0x00010000: bcd(12345.67, "XXXXXX.XX"),
    0x00030000: bcd(-12.5, "XXXXXX.XX", True),
    0x02800002: bcd(49.98, "XX.XX"),
    0x02800004: bcd(3.25, "XX.XXXX", True),
    0x02050000: bcd(4.1, "XX.XXXX"),
    0x0201FF00: bcd(230.1, "XXX.X") + bcd(229.8, "XXX.X") + bcd(231.0, "XXX.X"),
    0x0202FF00: bcd(5.123, "XXX.XXX", True) + bcd(-0.5, "XXX.XXX", True)
    + bcd(0, "XXX.XXX", True),
    0x0203FF00: b"".join(bcd(v, "XX.XXXX", True) for v in (1.5, 1.0, -0.25, 0.75)),
    0x0204FF00: b"".join(bcd(v, "XX.XXXX", True) for v in (-0.5, 0.1, 0.2, 0.3)),
    0x0206FF00: b"".join(bcd(v, "X.XXX", True) for v in (0.95, 0.999, -0.5, 1.0)),
}


def enabled_map(tmp_path, close="true"):
    text = Path(EXAMPLE).read_text(encoding="utf-8")
    text = text.replace("  trip: false", "  trip: true").replace(
        "  close: false ", f"  close: {close} ")
    path = tmp_path / "meter.yaml"
    path.write_text(text, encoding="utf-8")
    return load_map(str(path))


MAP = """
name: interop
points:
  - {quantity: active_energy, di: "00010000", format: XXXXXX.XX, unit: kWh}
  - {quantity: voltage, channel: A, di: "02010100", format: XXX.X, unit: V}
  - {quantity: current, channel: A, di: "02020100", format: XXX.XXX, signed: true, unit: A}
  - {quantity: active_power, di: "02030000", format: XX.XXXX, signed: true, unit: kW}
  - {quantity: reactive_power, di: "02040000", format: XX.XXXX, signed: true, unit: kvar}
  - {quantity: power_factor, di: "02060000", format: X.XXX, signed: true}
  - {quantity: frequency, di: "02800002", format: XX.XX, unit: Hz}
  - {quantity: active_demand, di: "02800004", format: XX.XXXX, signed: true, unit: kW}
"""


def fill(meter):
    """Their meter at 000000000161 with the values the tests read."""
    meter.set_address(bytes.fromhex("61 01 00 00 00 00"))  # the package takes wire order
    assert meter.set_00(0x00010000, 12345.67)
    for di, value in [(0x02010100, 231.4), (0x02020100, -5.123), (0x02030000, -1.2345),
                      (0x02040000, 0.5), (0x02060000, -0.5), (0x02800002, 49.98),
                      (0x02800004, 3.25)]:
        assert meter.set_02(di, value)
    return meter
