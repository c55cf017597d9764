"""The LwM2M device models: IPSO values in, canonical records out (``lwm2m_ipso``); device
frames in object 19 decoded by another model (``lwm2m_binary``); commands → operations;
options checked with key paths. No sockets, no codecs: values are given decoded."""

from __future__ import annotations

import copy
import json
import math
import re
import struct
from pathlib import Path

import pytest
import yaml

from hub.config import check_config
from hub.contracts import DecodeError, EncodeError
from hub.contracts.lwm2m import Lwm2mModel, Lwm2mOperation, Lwm2mValue
from hub.model import (
    ALARM_RULES,
    COMMAND_ACTIONS,
    Command,
    Event,
    EventKind,
    EventState,
    Level,
    Quality,
    Reading,
    quantity_names,
)
from hub.pluginmanager import make_plugins
from hub.testing import check_decode
from hub.validate import ConfigError
from plugins.devices.lwm2m_binary import Lwm2mBinaryModel
from plugins.devices.lwm2m_ipso import IpsoModel
from plugins.devices.modbus.model import ModbusMapModel
from plugins.protocols.modbus import rtu

V = Lwm2mValue
T0 = 1_767_225_600.0
EFD_MAP = "conf/devices/efd-example.yaml"


@pytest.fixture(scope="module")
def plugins():
    return make_plugins()


def config(models: dict, devices: list | None = None) -> dict:
    return {"transports": {"demo": {"type": "simulator"}}, "models": models,
            "devices": devices or []}


def errors_of(plugins, models: dict) -> list[str]:
    with pytest.raises(ConfigError) as e:
        check_config(config(models), "conf/hub.yaml", plugins)
    return e.value.errors


def build(plugins, options: dict, name: str = "nb"):
    """The model a hub would build from ``models.<name>`` = ``options``."""
    cfg = check_config(config({name: options}), "conf/hub.yaml", plugins)
    section = cfg.models[name]
    return plugins.models[section.type].factory(section.options)


def decode(model, values, received_at=T0, device="nb-1") -> list:
    records = list(model.decode_values(device, values, received_at))
    for r in records:
        if isinstance(r, Reading):
            r.validate()
    return records


def readings(records) -> dict:
    return {(r.quantity, r.channel): r.value for r in records if isinstance(r, Reading)}


def cmd(action: str, channel: str = "", **params) -> Command:
    return Command("c1", "nb-1", action, T0, channel, params)


# ---------------------------------------------------------------------------- lwm2m_ipso


#: One notification per observed instance, as the simulator of the NB-IoT EFD sends them.
SIMULATOR = [
    V((3303, 0, 5700), 23.5), V((3303, 0, 5701), "Cel"),
    V((3303, 1, 5700), 24.0), V((3303, 2, 5700), 25.0), V((3303, 3, 5700), 26.5),
    V((3316, 0, 5700), 221.0), V((3316, 0, 5701), "V"),
    V((3316, 1, 5700), 222.0), V((3316, 2, 5700), 223.0),
    V((3317, 0, 5700), 5.25), V((3317, 0, 5701), "A"),
    V((3317, 1, 5700), 5.5), V((3317, 2, 5700), 5.75),
    V((3317, 10, 5700), 35.0), V((3317, 10, 5701), "mA"), V((3317, 10, 5750), "residual"),
    V((3328, 0, 5700), 1.25), V((3328, 0, 5701), "kW"),
    V((3331, 0, 5700), 12.5), V((3331, 0, 5701), "kWh"),
    V((3312, 0, 5850), True),
    V((3200, 0, 5500), False),
]


def test_the_simulator_layout_decodes_with_no_options(plugins):
    """/3303/0..3 → T1..T4, /3316/0..2 and /3317/0..2 → A B C, /3317/10 → residual L1 in
    mA, /3328/0 kW → W, /3331/0 kWh, the relay and the alarm contact."""
    model = build(plugins, {"type": "lwm2m_ipso"})
    assert isinstance(model, Lwm2mModel)
    records = decode(model, SIMULATOR)
    assert readings(records) == {
        ("temperature", "T1"): 23.5, ("temperature", "T2"): 24.0,
        ("temperature", "T3"): 25.0, ("temperature", "T4"): 26.5,
        ("voltage", "A"): 221.0, ("voltage", "B"): 222.0, ("voltage", "C"): 223.0,
        ("current", "A"): 5.25, ("current", "B"): 5.5, ("current", "C"): 5.75,
        ("residual_current", "L1"): 35.0,
        ("active_power", ""): 1250.0, ("active_energy", ""): 12.5,
    }
    assert all(r.ts == T0 and r.quality is Quality.GOOD for r in records
               if isinstance(r, Reading))
    events = [r for r in records if isinstance(r, Event)]
    assert events == [
        Event("nb-1", EventKind.STATE, "relay_closed", EventState.NOTICE, T0, Level.INFO,
              source="device", message="合闸"),
        Event("nb-1", EventKind.ALARM, "vendor_contact_3200_0", EventState.CLEARED, T0,
              source="device", message="digital input /3200/0 active"),
    ]


def test_a_device_named_with_the_model_type_directly_needs_no_options(plugins):
    cfg = check_config(config({}, [{"id": "nb-1", "model": "lwm2m_ipso"}]), "hub.yaml",
                       plugins)
    assert cfg.models["lwm2m_ipso"].type == "lwm2m_ipso"
    model = plugins.models["lwm2m_ipso"].factory(None)  # as provisioning rules build it
    assert readings(decode(model, [V((3303, 0, 5700), 20.0)])) == {("temperature", "T1"): 20.0}


def test_observe_paths_are_the_instances_the_model_decodes():
    model = IpsoModel()
    registered = [(1, 0), (3, 0), (4, 0), (3303, 0), (3303, 1), (3317, 10), (3312, 0),
                  (3312, 1), (3200, 0), (19, 0), (3331,), (26241, 0)]
    assert model.observe_paths(registered) == [
        (3303, 0), (3303, 1), (3317, 10), (3312, 0), (3200, 0), (3331,)]


def test_explicit_map_paths_and_relay_are_observed_without_defaults(plugins):
    model = build(plugins, {"type": "lwm2m_ipso", "defaults": False,
                            "relay": "/3201/0/5550",
                            "map": {"/26241/0/1": {"quantity": "gas_concentration"}}})
    assert model.observe_paths([(3, 0), (3303, 0), (3201, 0), (26241, 0)]) == [
        (3201, 0), (26241, 0)]
    records = decode(model, [V((3303, 0, 5700), 20.0), V((26241, 0, 1), 42)])
    assert readings(records) == {("gas_concentration", ""): 42.0}


# ---- residual current -----------------------------------------------------------------


@pytest.mark.parametrize("meta", [
    [V((3317, 4, 5750), "Residual ")],          # application type, any case
    [V((3317, 4, 5701), "mA")],                 # unit
    [V((3317, 4, 5750), "residual"), V((3317, 4, 5701), "A")],   # residual, but in A
])
def test_a_3317_instance_is_residual_by_5750_or_5701(meta):
    model = IpsoModel()
    value = 0.03 if any(v.value == "A" for v in meta) else 30.0
    records = decode(model, [V((3317, 4, 5700), value), *meta])
    assert readings(records) == {("residual_current", "L5"): 30.0}


def test_what_was_learned_applies_to_later_notifications_of_only_5700():
    model = IpsoModel()
    decode(model, [V((3317, 10, 5700), 35.0), V((3317, 10, 5750), "residual"),
                   V((3317, 11, 5700), 0.05), V((3317, 11, 5701), "A"),
                   V((3317, 11, 5750), "Residual")])
    assert readings(decode(model, [V((3317, 10, 5700), 40.0), V((3317, 11, 5700), 0.06)])) == {
        ("residual_current", "L1"): 40.0, ("residual_current", "L2"): 60.0}
    # per device: another device has told the model nothing
    assert decode(model, [V((3317, 10, 5700), 40.0)], device="nb-2") == []
    # a device that stops calling its instance residual is believed
    assert readings(decode(model, [V((3317, 0, 5700), 1.5), V((3317, 0, 5701), "A"),
                                   V((3317, 0, 5750), "phase")])) == {("current", "A"): 1.5}


def test_explicit_residual_instances_and_map_win(plugins):
    model = build(plugins, {"type": "lwm2m_ipso",
                            "residual": {"instances": ["/3317/3"], "units": []},
                            "map": {"/3317/5": {"quantity": "current", "channel": "N"}}})
    records = decode(model, [V((3317, 3, 5700), 12.0),
                             V((3317, 5, 5700), 0.5), V((3317, 5, 5701), "mA"),
                             V((3317, 6, 5700), 7.0), V((3317, 6, 5701), "mA")])
    # units: [] switches the 5701 rule off, so /3317/6 is no residual (and no phase)
    assert readings(records) == {("residual_current", "L4"): 12.0, ("current", "N"): 0.0005}


def test_learned_state_is_bounded_by_devices():
    model = IpsoModel(max_devices=2)
    for dev in ("a", "b", "c"):
        decode(model, [V((3317, 10, 5750), "residual")], device=dev)
    assert list(model._states) == ["b", "c"]
    assert decode(model, [V((3317, 10, 5700), 1.0)], device="a") == []


# ---- units, time, quality -------------------------------------------------------------


@pytest.mark.parametrize("values, expected", [
    ([V((3303, 0, 5700), 300.15), V((3303, 0, 5701), "K")], {("temperature", "T1"): 27.0}),
    ([V((3303, 0, 5700), 98.6), V((3303, 0, 5701), "[degF]")], {("temperature", "T1"): 37.0}),
    ([V((3316, 1, 5700), 0.4), V((3316, 1, 5701), "kV")], {("voltage", "B"): 400.0}),
    ([V((3328, 2, 5700), 800)], {("active_power", "B"): 800.0}),                  # IPSO W
    ([V((3331, 0, 5700), 1234.5)], {("active_energy", ""): 1.2345}),              # IPSO Wh
    ([V((3331, 0, 5700), 1234.5), V((3331, 0, 5701), "W.h")], {("active_energy", ""): 1.2345}),
    ([V((3305, 0, 5800), 1500), V((3305, 0, 5810), 200), V((3305, 0, 5820), 0.9),
      V((3305, 0, 5805), 5000), V((3305, 0, 5815), 100)],
     {("active_power", ""): 1500.0, ("reactive_power", ""): 200.0, ("power_factor", ""): 0.9,
      ("active_energy", ""): 5.0, ("reactive_energy", ""): 0.1}),
    ([V((4, 0, 2), -87)], {("signal_strength", ""): -87.0}),
    ([V((4, 0, 2), (-87).to_bytes(4, "big", signed=True))], {("signal_strength", ""): -87.0}),
])
def test_ipso_units_are_converted_to_the_canonical_unit(values, expected):
    assert readings(decode(IpsoModel(), values)) == expected


def test_an_explicit_unit_and_scale_win_over_5701(plugins):
    model = build(plugins, {"type": "lwm2m_ipso", "map": {
        "/3303/5": {"quantity": "temperature", "channel": "T6", "unit": "°C", "scale": 0.1}}})
    records = decode(model, [V((3303, 5, 5700), 235), V((3303, 5, 5701), "weird")])
    assert readings(records) == {("temperature", "T6"): 23.5}


def test_a_unit_the_hub_cannot_convert_is_a_decode_error():
    with pytest.raises(DecodeError, match=r"/3303/0/5700: 'furlong' cannot be converted to "
                                          r"'°C'.*set map./3303/0/5700.unit"):
        decode(IpsoModel(), [V((3303, 0, 5700), 1.0), V((3303, 0, 5701), "furlong")])


def test_a_value_carrying_its_own_time_keeps_it_then_5518_then_received_at():
    records = decode(IpsoModel(), [
        V((3303, 0, 5700), 20.0, ts=T0 - 60), V((3303, 0, 5518), int(T0 - 30)),
        V((3303, 1, 5700), 21.0), V((3303, 1, 5518), int(T0 - 30)),
        V((3303, 2, 5700), 22.0)])
    assert [(r.channel, r.ts) for r in records] == [
        ("T1", T0 - 60), ("T2", T0 - 30), ("T3", T0)]


def test_nan_gives_no_reading_and_out_of_range_values_are_bad():
    model = IpsoModel()
    records = decode(model, [
        V((3303, 0, 5700), math.nan),
        V((3303, 1, 5700), 130.0), V((3303, 1, 5603), -40.0), V((3303, 1, 5604), 125.0),
        V((3316, 0, 5700), -5.0),
        V((3303, 2, 5700), -300.0),
        V((3317, 0, 5700), math.inf),
    ])
    assert [(r.channel, r.value, r.quality) for r in records] == [
        ("T2", 130.0, Quality.BAD), ("A", -5.0, Quality.BAD), ("T3", -300.0, Quality.BAD)]
    # the range is remembered for notifications of 5700 alone
    assert decode(model, [V((3303, 1, 5700), 126.0)])[0].quality is Quality.BAD
    assert decode(model, [V((3303, 1, 5700), 60.0)])[0].quality is Quality.GOOD


def test_untyped_tlv_bytes_are_read_as_ipso_types():
    records = decode(IpsoModel(), [
        V((3303, 0, 5700), struct.pack(">f", 23.5)), V((3303, 0, 5701), b"Cel"),
        V((3303, 1, 5700), struct.pack(">d", 24.25)),
        V((3303, 1, 5518), int(T0 - 5).to_bytes(4, "big")),
        V((3200, 0, 5500), b"\x01")])
    assert readings(records) == {("temperature", "T1"): 23.5, ("temperature", "T2"): 24.25}
    assert records[1].ts == T0 - 5
    assert records[2].code == "vendor_contact_3200_0" and records[2].state is EventState.RAISED


@pytest.mark.parametrize("value, message", [
    ("hot", r"/3303/0/5700: expected a number, got 'hot'"),
    (b"\x01\x02\x03", r"/3303/0/5700: expected a number"),
])
def test_a_mapped_value_that_is_no_number_is_a_decode_error(value, message):
    with pytest.raises(DecodeError, match=message):
        decode(IpsoModel(), [V((3303, 0, 5700), value)])


def test_values_the_model_does_not_map_are_skipped():
    assert decode(IpsoModel(), [V((3, 0, 0), "ACME"), V((1, 0, 1), 300), V((3316, 3, 5700), 1.0),
                                V((3303, 0, 5601), 10.0), V((3317, 7, 5700), 1.0)]) == []


def test_plain_uplink_is_refused():
    with pytest.raises(DecodeError, match="no plain uplink: this model decodes LwM2M values"):
        IpsoModel().decode("nb-1", b"\x01", T0)


# ---- contacts, relay, device errors ---------------------------------------------------


def test_alarm_contacts_as_events_or_readings_per_instance(plugins):
    model = build(plugins, {"type": "lwm2m_ipso", "map": {
        "/3200/1": {"event": "alarm", "code": "fault_arc", "message": "故障电弧"},
        "/3200/2": {"event": "fault", "code": "self_fault", "active": False},  # NC contact
        "/3342/0": {"quantity": "outage"},
        "/3200/3": "ignore"}})
    records = decode(model, [V((3200, 0, 5500), True), V((3200, 1, 5500), True),
                             V((3200, 2, 5500), True), V((3342, 0, 5500), True),
                             V((3200, 3, 5500), True)])
    assert records == [
        Reading("nb-1", "outage", 1.0, T0),
        Event("nb-1", EventKind.ALARM, "vendor_contact_3200_0", EventState.RAISED, T0,
              source="device", message="digital input /3200/0 active"),
        Event("nb-1", EventKind.ALARM, "fault_arc", EventState.RAISED, T0, source="device",
              message="故障电弧"),
        Event("nb-1", EventKind.FAULT, "self_fault", EventState.CLEARED, T0, Level.FAULT,
              source="device"),
    ]


def test_the_relay_state_is_a_notice_on_each_change():
    model = IpsoModel()
    states = [decode(model, [V((3312, 0, 5850), on)]) for on in (True, True, False, False, True)]
    assert [[e.code for e in s] for s in states] == [
        ["relay_closed"], [], ["relay_open"], [], ["relay_closed"]]


def test_lwm2m_error_codes_are_a_level_style_self_fault():
    model = IpsoModel()
    raised = decode(model, [V((3, 0, 11, 0), 0), V((3, 0, 11, 1), 1)])
    assert raised == [Event("nb-1", EventKind.FAULT, "self_fault", EventState.RAISED, T0,
                            Level.FAULT, source="device", message="LwM2M error code 1")]
    assert decode(model, [V((3, 0, 11, 0), 0)])[0].state is EventState.CLEARED


# ---- commands -------------------------------------------------------------------------


def test_default_commands():
    model = IpsoModel()
    assert model.actions == {"reboot", "trip", "close"}
    assert model.encode_operations("nb-1", cmd("trip")) == [
        Lwm2mOperation("write", (3312, 0, 5850), False)]
    assert model.encode_operations("nb-1", cmd("close")) == [
        Lwm2mOperation("write", (3312, 0, 5850), True)]
    assert model.encode_operations("nb-1", cmd("reboot")) == [
        Lwm2mOperation("execute", (3, 0, 4))]
    with pytest.raises(EncodeError, match=r"no silence command \(it has: close, reboot, trip\)"):
        model.encode_operations("nb-1", cmd("silence"))
    with pytest.raises(EncodeError, match="trip takes no params"):
        model.encode_operations("nb-1", cmd("trip", delay=1))
    with pytest.raises(EncodeError, match="trip acts on the whole device"):
        model.encode_operations("nb-1", cmd("trip", "L1"))
    with pytest.raises(EncodeError, match="use encode_operations"):
        model.encode_command("nb-1", cmd("trip"))


def test_relay_per_channel_on_a_digital_output(plugins):
    model = build(plugins, {"type": "lwm2m_ipso", "closed_value": False,
                            "relay": {"L1": "/3201/0", "L2": "/3201/1/5550"}})
    assert model.encode_operations("nb-1", cmd("trip", "L2")) == [
        Lwm2mOperation("write", (3201, 1, 5550), True)]
    with pytest.raises(EncodeError, match="trip needs a channel: one of L1, L2"):
        model.encode_operations("nb-1", cmd("trip"))
    assert decode(model, [V((3201, 0, 5550), False)])[0].channel == "L1"
    assert decode(model, [V((3201, 0, 5550), False)]) == []
    assert decode(model, [V((3201, 0, 5550), True)])[0].code == "relay_open"


def test_no_relay_no_trip(plugins):
    model = build(plugins, {"type": "lwm2m_ipso", "relay": None})
    assert model.actions == {"reboot"}
    assert decode(model, [V((3312, 0, 5850), True)]) == []


def test_set_threshold_writes_the_configured_resource(plugins):
    model = build(plugins, {"type": "lwm2m_ipso", "thresholds": {
        "residual_current": {"path": "/26241/0/1", "unit": "A"},
        "temperature": {"T1": {"path": "/26241/0/2", "type": "integer"},
                        "T2": "/26241/0/3"},
        "overvoltage": "/26241/0/4", "undervoltage": "/26241/0/5"}})
    assert "set_threshold" in model.actions
    op = model.encode_operations
    assert op("nb-1", cmd("set_threshold", quantity="residual_current", value=300)) == [
        Lwm2mOperation("write", (26241, 0, 1), 0.3)]
    assert op("nb-1", cmd("set_threshold", "T1", rule="temperature", value=80.4)) == [
        Lwm2mOperation("write", (26241, 0, 2), 80)]
    assert op("nb-1", cmd("set_threshold", "T2", quantity="temperature", value=70.5)) == [
        Lwm2mOperation("write", (26241, 0, 3), 70.5)]
    with pytest.raises(EncodeError, match=r"residual_current set point 5 is outside 20..1000 mA"):
        op("nb-1", cmd("set_threshold", rule="residual_current", value=5))
    with pytest.raises(EncodeError, match="set_threshold temperature needs a channel"):
        op("nb-1", cmd("set_threshold", rule="temperature", value=80))
    with pytest.raises(EncodeError, match=r"quantity 'voltage' is ambiguous"):
        op("nb-1", cmd("set_threshold", quantity="voltage", value=250))
    with pytest.raises(EncodeError, match="rule 'overcurrent' has no set point here"):
        op("nb-1", cmd("set_threshold", rule="overcurrent", value=80))
    with pytest.raises(EncodeError, match="params.value must be a number"):
        op("nb-1", cmd("set_threshold", rule="residual_current", value="300"))


def test_custom_commands_add_and_override_actions(plugins):
    model = build(plugins, {"type": "lwm2m_ipso", "commands": {
        "reset": {"execute": "/26241/0/10"},
        "silence": [{"write": "/26241/0/11", "value": True},
                    {"execute": "/26241/0/12", "args": "0='30'"}],
        "reboot": {"execute": "/26241/0/13"},
        "disable_channel": {"T1": {"write": "/26241/1/1", "value": 0}}}})
    op = model.encode_operations
    assert op("nb-1", cmd("silence")) == [Lwm2mOperation("write", (26241, 0, 11), True),
                                          Lwm2mOperation("execute", (26241, 0, 12), "0='30'")]
    assert op("nb-1", cmd("reboot")) == [Lwm2mOperation("execute", (26241, 0, 13))]
    assert op("nb-1", cmd("disable_channel", "T1")) == [
        Lwm2mOperation("write", (26241, 1, 1), 0)]
    assert op("nb-1", cmd("trip")) == [Lwm2mOperation("write", (3312, 0, 5850), False)]


# ---- options --------------------------------------------------------------------------


def test_ipso_option_errors_name_their_key_paths(plugins):
    errs = errors_of(plugins, {"nb": {
        "type": "lwm2m_ipso",
        "map": {"/3303": {"quantity": "temperature"},
                "/26241/0": {"quantity": "temperature"},
                "/3303/5": {"quantity": "temprature", "channel": "T6"},
                "/3303/6": {"quantity": "temperature", "channel": "X1", "unit": "furlong"},
                "/3200/1": {"event": "alarm", "code": "door"},
                "/3200/2": "drop"},
        "residual": {"instances": ["/3303/0"], "units": "mA"},
        "relay": "/3312",
        "closed_value": "yes",
        "thresholds": {"hot": "/1/0/1", "temperature": {"path": "/26241/0"}},
        "commands": {"set_threshold": {"write": "/1/0/1", "value": 1},
                     "reset": {"write": "/26241/0/1"}, "explode": {"execute": "/1/0/1"}},
        "defualts": False}})
    m = "conf/hub.yaml: models.nb."
    assert errs == [
        m + "map./3303: '/3303' is not a /object/instance or /object/instance/resource path",
        m + "map./26241/0: object 26241 has no default value resource: give /26241/0/<resource>",
        m + "map./3303/5.quantity: 'temprature' is not a canonical quantity (one of "
            + quantity_names() + ")",
        m + "map./3303/6.channel: channel 'X1' is not one of '', A, B, C, N, T<n> "
            "(temperature), L<n> (circuit)",
        m + "map./3303/6.unit: 'furlong' cannot be converted to '°C', the unit of temperature "
            "(known: '°C', '℃', 'degC', 'K', '°F')",
        m + "map./3200/1.code: 'door' is not one of arc_flash, fault_arc, gas_concentration, "
            "overcurrent, overvoltage, pyrolytic_particles, residual_current, "
            "resistive_leakage_current, smoke_concentration, temperature, undervoltage "
            "(or a vendor_... code)",
        m + "map./3200/2: expected {quantity: ..., channel: ...} (a reading), {event: "
            "alarm|fault, code: ...} (an event) or ignore; got 'drop'",
        m + "residual.instances[0]: '/3303/0' is not a 3317 Current instance (map other "
            "objects with map:)",
        m + "residual.units: expected a list of strings, got 'mA'",
        m + "relay: '/3312' is not a /object/instance or /object/instance/resource path",
        m + "closed_value: expected true or false, got 'yes'",
        m + "thresholds.hot: is not an alarm rule; one of " + ", ".join(ALARM_RULES),
        m + "thresholds.temperature.path: '/26241/0' is not a /object/instance/resource path",
        m + "commands.set_threshold: set points are written through thresholds:",
        m + "commands.reset.value: is required",
        m + "commands.explode: is not a command action; one of " + ", ".join(COMMAND_ACTIONS),
        m + "defualts: is not a known key here",
    ]


# ---------------------------------------------------------------------------- lwm2m_binary


def efd_frame(residual: int = 35, t1: int = 253) -> bytes:
    """A real answer of the example detector to its first planned poll."""
    poll = ModbusMapModel.from_file(EFD_MAP).plan()[0]
    regs = [residual, t1, 0x7FFF, 240, 251, 0, 0, 0, 2205] + [0] * poll.count
    return rtu.read_response(1, poll.function, rtu.pack_registers(regs[:poll.count]))


def binary(plugins, **extra):
    return build(plugins, {"type": "lwm2m_binary",
                           "frames": {"type": "modbus_payload", "map": EFD_MAP}, **extra})


def test_modbus_frames_in_object_19_decode_with_the_register_map(plugins):
    model = binary(plugins)
    assert isinstance(model, Lwm2mBinaryModel) and isinstance(model, Lwm2mModel)
    assert model.observe_paths([(3, 0), (19, 0), (19, 1)]) == [(19, 0)]
    inner = ModbusMapModel.from_file(EFD_MAP)
    first, second = efd_frame(), efd_frame(residual=500, t1=612)
    records = decode(model, [V((19, 0, 0, 0), first), V((19, 0, 0, 1), second, ts=T0 + 9),
                             V((19, 0, 1), 1), V((3, 0, 0), "ACME")])
    assert records == inner.decode("nb-1", first, T0) + inner.decode("nb-1", second, T0 + 9)
    assert [(r.value, r.ts) for r in records if isinstance(r, Reading)
            and r.quantity == "residual_current"] == [(35.0, T0), (500.0, T0 + 9)]
    assert ("temperature", "T1") in readings(records)


def test_plain_uplink_goes_to_the_frame_model(plugins):
    model = binary(plugins)
    check_decode(model, "nb-1", efd_frame(),
                 ModbusMapModel.from_file(EFD_MAP).decode("nb-1", efd_frame(), 0.0))


def test_the_data_creation_time_stamps_frames_without_their_own(plugins):
    model = build(plugins, {"type": "lwm2m_binary", "uplink": "/19/2/0",
                            "frames": {"type": "json_map", "points": [
                                {"path": "leak", "quantity": "residual_current",
                                 "channel": "L1"}]}})
    assert model.observe_paths([]) == [(19, 2)]
    records = decode(model, [V((19, 2, 2), int(T0 - 120)),
                             V((19, 2, 0, 0), json.dumps({"leak": 30}).encode()),
                             V((19, 2, 0, 1), b""),
                             V((19, 0, 0, 0), json.dumps({"leak": 99}).encode())])
    assert records == [Reading("nb-1", "residual_current", 30.0, T0 - 120, "L1")]


def test_bad_uplink_values_are_decode_errors_naming_the_path(plugins):
    model = binary(plugins)
    with pytest.raises(DecodeError, match=r"/19/0/0/0: expected opaque bytes, got str"):
        decode(model, [V((19, 0, 0, 0), "0103")])
    with pytest.raises(DecodeError, match=r"^/19/0/0/1: ") as e:
        decode(model, [V((19, 0, 0, 0), efd_frame()), V((19, 0, 0, 1), efd_frame()[:-1] + b"!")])
    assert e.value.excerpt


def test_commands_are_the_frame_models_bytes_written_to_the_downlink(plugins):
    model = binary(plugins, downlink="/19/1/0/0")
    frame = ModbusMapModel.from_file(EFD_MAP).encode_command("nb-1", cmd("trip"), 1)
    assert model.encode_operations("nb-1", cmd("trip")) == [
        Lwm2mOperation("write", (19, 1, 0, 0), frame)]
    assert model.encode_command("nb-1", cmd("trip")) == frame
    assert "trip" in model.actions
    with pytest.raises(EncodeError):
        model.encode_operations("nb-1", cmd("reboot"))


def test_binary_option_errors_name_their_key_paths(plugins):
    good = {"type": "modbus_payload", "map": EFD_MAP}
    cases = {
        "a": {"type": "lwm2m_binary"},
        "b": {"type": "lwm2m_binary", "frames": "efd"},
        "c": {"type": "lwm2m_binary", "frames": {"type": "modbus_pay"}},
        "d": {"type": "lwm2m_binary", "frames": {"type": "lwm2m_ipso"}},
        "e": {"type": "lwm2m_binary", "frames": {"type": "modbus_payload",
                                                 "map": "conf/devices/missing.yaml",
                                                 "encodng": "hex"}},
        "f": {"type": "lwm2m_binary", "frames": good, "uplink": "/19/0", "downlnk": "/19/1/0"},
    }
    errs = errors_of(plugins, copy.deepcopy(cases))
    m = "conf/hub.yaml: models."
    assert errs[:4] == [
        m + "a.frames: is required",
        m + "b.frames: expected the frame model inline: {type: <device model type>, ...its "
            "options} (e.g. {type: modbus_payload, map: conf/devices/efd-example.yaml}); "
            "got 'efd'",
        m + "c.frames.type: 'modbus_pay' is not a known device model type (known: dlt645, "
            "json_map, lwm2m_binary, lwm2m_ipso, modbus_map, modbus_payload, simulated; see "
            "`hub plugins`)",
        m + "d.frames.type: lwm2m_ipso decodes LwM2M values, not frames: name a model type "
            "that decodes bytes (modbus_payload, json_map, a vendor's)",
    ]
    assert m + "e.frames.encodng: is not a known key here" in errs
    assert any(e.startswith(m + "e.frames.map: ") and "missing.yaml" in e for e in errs)
    assert errs[-2:] == [m + "f.uplink: '/19/0' is not a /object/instance/resource or "
                             "/object/instance/resource/instance path",
                         m + "f.downlnk: is not a known key here"]
    with pytest.raises(ValueError, match="needs its frame model"):
        plugins.models["lwm2m_binary"].factory(None)


def test_the_readme_example_is_valid(plugins):
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.S)
                 if "type: lwm2m_binary" in b)  # the models section's block
    cfg = check_config({"transports": {"demo": {"type": "simulator"}},
                        **yaml.safe_load(block)},
                       str(Path(__file__).parent.parent / "conf" / "hub.yaml"),  # map beside it
                       plugins)
    ipso = plugins.models["lwm2m_ipso"].factory(cfg.models["nb-efd"].options)
    assert ipso.actions == {"reboot", "trip", "close", "set_threshold", "reset", "silence"}
    frames = plugins.models["lwm2m_binary"].factory(cfg.models["nb-efd-frames"].options)
    assert frames.observe_paths([]) == [(19, 0)]


@pytest.mark.parametrize("stamp", [math.inf, "inf", -math.nan, 10**400, -5, 5_000_000_000,
                                   (2**62).to_bytes(8, "big")])
def test_a_5518_timestamp_that_is_no_date_is_a_decode_error(stamp):
    """Not finite, before 1970, after 2100 or beyond any float: refused, naming the path
    (a record dated there would be garbage, and a huge int used to raise OverflowError)."""
    with pytest.raises(DecodeError, match=r"^/3303/0/5518: "):
        decode(IpsoModel(), [V((3303, 0, 5700), 20.0), V((3303, 0, 5518), stamp)])


def test_a_value_whose_own_time_is_no_date_is_a_decode_error_and_0_means_unset():
    with pytest.raises(DecodeError, match=r"^/3303/0/5700: time inf"):
        decode(IpsoModel(), [V((3303, 0, 5700), 20.0, ts=math.inf)])
    records = decode(IpsoModel(), [V((3303, 0, 5700), 20.0), V((3303, 0, 5518), 0)])
    assert records[0].ts == T0  # a clock never set: the time it arrived


def test_a_cbor_bignum_where_a_number_belongs_is_a_decode_error():
    with pytest.raises(DecodeError, match=r"/3303/0/5700: expected a number, got an integer "
                                          r"of 1329 bits") as e:
        decode(IpsoModel(), [V((3303, 0, 5700), 10**400)])
    assert e.value.excerpt.startswith(b"an integer")


@pytest.mark.parametrize("stamp", [math.inf, 10**400, -1, 5_000_000_000])
def test_a_data_creation_time_that_is_no_date_is_a_decode_error(plugins, stamp):
    model = binary(plugins)
    with pytest.raises(DecodeError, match=r"^/19/0/2: "):
        decode(model, [V((19, 0, 2), stamp), V((19, 0, 0, 0), efd_frame())])
