"""Configuration checking: every error names the file, the key path and what was expected."""

from __future__ import annotations

import copy
import math

import pytest
import yaml

from hub.cli import main
from hub.config import Secret, check_config, load_config
from hub.pluginmanager import make_plugins
from hub.validate import ConfigError
from tests.test_config_types import set_at

BASE = {
    "transports": {"demo": {"type": "simulator", "interval": 5}},
    "alarms": {"warning_ratio": 0.9, "defaults": {
        "temperature": {"alarm": 80, "hysteresis": 2},
        "undervoltage": {"alarm": 187, "warning": 198},
        "overcurrent": {"enabled": False},
    }},
    "devices": [
        {"id": "d1", "model": "simulated", "transport": "demo", "address": "normal"},
        {"id": "d2", "model": "simulated", "transport": "demo", "address": "overheat",
         "alarms": {"temperature": {"alarm": 70}}},
    ],
}


@pytest.fixture(scope="module")
def plugins():
    return make_plugins()


def errors_of(data, plugins, file="conf/hub.yaml"):
    with pytest.raises(ConfigError) as e:
        check_config(data, file, plugins)
    return e.value.errors


def changed(path, value):
    return set_at(BASE, path, value)


def test_the_embedded_default_is_valid(plugins):
    """conf/hub.yaml loads with no external server and declares its demo devices."""
    cfg = load_config("conf/hub.yaml", plugins)
    assert [d.id for d in cfg.devices] == ["demo-normal", "demo-overheat", "demo-flaky"]
    assert cfg.journal.path.endswith("journal.sqlite") and cfg.journal.retention == 730 * 86400
    assert not cfg.provisioning_enabled


def test_set_point_outside_the_standard_range(plugins):
    """A temperature set point of 200 °C is refused with the table reference."""
    errs = errors_of(changed(["alarms", "defaults", "temperature", "alarm"], 200), plugins)
    assert errs == ["conf/hub.yaml: alarms.defaults.temperature.alarm: 200 is outside 45..140 °C "
                    "(T/CFPA 023-2023 table 1)"]


def test_every_error_is_reported_at_once(plugins):
    """Several problems in one file give one line each, with their key paths."""
    data = copy.deepcopy(BASE)
    data["devices"][0]["hearbeat"] = {"interval": 5}
    data["devices"][1]["model"] = "nope"
    data["transports"]["demo"]["interval"] = "fast"
    data["alarms"]["defaults"]["overvoltage"] = {"alarm": 310}
    errs = errors_of(data, plugins)
    assert "conf/hub.yaml: devices[0].hearbeat: is not a known key here" in errs
    assert any(e.startswith("conf/hub.yaml: devices[1].model: 'nope' is neither") for e in errs)
    assert "conf/hub.yaml: transports.demo.interval: expected a number, got 'fast'" in errs
    assert ("conf/hub.yaml: alarms.defaults.overvoltage.alarm: 310 is outside 221..300 V "
            "(T/CFPA 023-2023 table 1)") in errs
    assert len(errs) == 4


def test_unknown_types_and_references(plugins):
    """Unknown transport types, transports, alarm types and profiles are named."""
    data = copy.deepcopy(BASE)
    data["sinks"] = {"db": {"type": "influx"}}
    data["devices"][0]["transport"] = "dtu"
    data["devices"][1]["address"] = "meltdown"
    data["devices"][1]["alarms"]["heat"] = {"alarm": 50}
    errs = errors_of(data, plugins)
    sink_error = next(e for e in errs if e.startswith("conf/hub.yaml: sinks.db.type:"))
    assert sink_error.startswith("conf/hub.yaml: sinks.db.type: 'influx' is not a known sink "
                                 "type (known: ")
    assert "influxdb" in sink_error and sink_error.endswith("see `hub plugins`)")
    assert ("conf/hub.yaml: devices[0].transport: 'dtu' is not a configured transport "
            "(known: demo)") in errs
    assert any(e.startswith("conf/hub.yaml: devices[1].address: 'meltdown' is not a simulator "
                            "profile") for e in errs)
    assert any(e.startswith("conf/hub.yaml: devices[1].alarms.heat: is not an alarm type")
               for e in errs)


def test_duplicate_ids_and_addresses(plugins):
    """Two devices with one id, or one address on one transport, are refused."""
    data = copy.deepcopy(BASE)
    data["devices"].append({"id": "d1", "model": "simulated", "transport": "demo",
                            "address": "normal"})
    errs = errors_of(data, plugins)
    assert "conf/hub.yaml: devices[2].id: 'd1' is already used by devices[0]" in errs
    assert ("conf/hub.yaml: devices[2].address: is already the address of device 'd1' on "
            "transport 'demo'") in errs


def test_warning_must_be_on_the_safe_side(plugins):
    """A warning threshold above a high alarm (or below a low one) is an error."""
    errs = errors_of(changed(["alarms", "defaults", "temperature", "warning"], 90), plugins)
    assert errs == ["conf/hub.yaml: alarms.defaults.temperature.warning: 90 °C must be below "
                    "the alarm set point 80 °C"]
    errs = errors_of(changed(["alarms", "defaults", "undervoltage", "warning"], 180), plugins)
    assert errs == ["conf/hub.yaml: alarms.defaults.undervoltage.warning: 180 V must be above "
                    "the alarm set point 187 V"]


def test_device_overrides_merge_over_defaults(plugins):
    """A device's set point overrides the default; hysteresis and the warning share carry over."""
    cfg = check_config(copy.deepcopy(BASE), "x.yaml", plugins)
    d1, d2 = cfg.devices
    assert d1.alarms["temperature"].alarm == 80 and d1.alarms["temperature"].warning == 72
    assert d2.alarms["temperature"].alarm == 70
    assert d2.alarms["temperature"].warning == pytest.approx(63)
    assert d2.alarms["temperature"].hysteresis == 2
    assert d1.alarms["undervoltage"].warning == 198
    assert "overcurrent" not in d1.alarms  # disabled rules are not evaluated


def test_enabling_a_rule_without_a_set_point_is_an_error(plugins):
    """overcurrent is off by default; switching it on for a device needs its set point."""
    data = copy.deepcopy(BASE)
    data["devices"][0]["alarms"] = {"overcurrent": {"enabled": True}}
    assert errors_of(data, plugins) == ["conf/hub.yaml: devices[0].alarms.overcurrent.alarm: "
                                        "is required"]
    data["devices"][0]["alarms"] = {"overcurrent": {"enabled": True, "alarm": 50}}
    cfg = check_config(data, "x.yaml", plugins)
    assert cfg.devices[0].alarms["overcurrent"].alarm == 50
    assert math.isnan(cfg.alarm_defaults["overcurrent"].alarm)


def test_secrets_from_environment_and_file(plugins, tmp_path, monkeypatch):
    """{env: NAME} and {file: PATH} become Secrets that do not show in reprs."""
    (tmp_path / "token.txt").write_text("s3cret\n")
    monkeypatch.setenv("HUB_TEST_NAME", "hub-7")
    data = copy.deepcopy(BASE)
    data["hub"] = {"name": {"env": "HUB_TEST_NAME"}}
    data["devices"][0]["location"] = {"file": "token.txt"}
    cfg = check_config(data, str(tmp_path / "hub.yaml"), plugins)
    assert cfg.name == "hub-7" and isinstance(cfg.name, Secret)
    assert cfg.devices[0].location == "s3cret"
    assert "s3cret" not in repr(cfg.devices[0])


def test_missing_secrets_are_named(plugins, tmp_path, monkeypatch):
    """An unset variable or unreadable file is an error at the key that asked for it."""
    monkeypatch.delenv("HUB_TEST_UNSET", raising=False)
    data = copy.deepcopy(BASE)
    data["hub"] = {"name": {"env": "HUB_TEST_UNSET"}}
    data["devices"][0]["location"] = {"file": "missing.txt"}
    errs = errors_of(data, plugins, str(tmp_path / "hub.yaml"))
    where = f"{tmp_path / 'hub.yaml'}"
    assert f"{where}: hub.name: environment variable HUB_TEST_UNSET is not set" in errs
    assert any(e.startswith(f"{tmp_path / 'hub.yaml'}: devices[0].location: cannot read secret "
                            "file") for e in errs)


def test_yaml_syntax_error_names_line(plugins, tmp_path):
    """Broken YAML is reported with the file, line and column."""
    p = tmp_path / "bad.yaml"
    p.write_text("hub:\n  name: [unclosed\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(p), plugins)
    assert str(e.value).startswith(f"{p}: line 3 column 1: not valid YAML")


def test_hub_check_exits_non_zero_with_the_message(tmp_path, capsys):
    """`hub check` prints each error on stderr and exits 2; a good file exits 0."""
    p = tmp_path / "hub.yaml"
    p.write_text(yaml.safe_dump(changed(["alarms", "defaults", "temperature", "alarm"], 200)))
    with pytest.raises(SystemExit) as e:
        main(["check", "-c", str(p)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"{p}: alarms.defaults.temperature.alarm: 200 is outside 45..140" in err
    assert main(["check", "-c", "conf/hub.yaml"]) == 0


def test_model_type_needing_options_cannot_be_named_directly(plugins):
    """`model: modbus_map` without a models: entry is caught by the check, not at start."""
    data = copy.deepcopy(BASE)
    data["devices"][0]["model"] = "modbus_map"
    errs = errors_of(data, plugins)
    assert len(errs) == 1
    assert errs[0].startswith("conf/hub.yaml: devices[0].model: model type 'modbus_map' needs "
                              "options; declare a model under models: with type: modbus_map")


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_numbers_are_refused(plugins, value):
    """YAML's .nan passes every range comparison; it would silently switch an alarm off."""
    errs = errors_of(changed(["alarms", "defaults", "temperature", "alarm"], value), plugins)
    assert errs == [f"conf/hub.yaml: alarms.defaults.temperature.alarm: expected a finite "
                    f"number, got {value}"]
    data = copy.deepcopy(BASE)
    data["presence"] = {"heartbeat_interval": value}
    assert errors_of(data, plugins) == [f"conf/hub.yaml: presence.heartbeat_interval: expected "
                                        f"a finite number, got {value}"]


def test_hysteresis_must_leave_a_reachable_clear_level(plugins):
    """alarm 80 with hysteresis 100 could never clear; undervoltage 187 + 40 clears above 220."""
    errs = errors_of(changed(["alarms", "defaults", "temperature", "hysteresis"], 100), plugins)
    assert errs == ["conf/hub.yaml: alarms.defaults.temperature.hysteresis: 100 °C would put "
                    "the clear level at -20 °C; it must stay above 0 (the alarm clears below "
                    "set point - hysteresis)"]
    data = copy.deepcopy(BASE)
    data["alarms"]["defaults"]["undervoltage"]["hysteresis"] = 40
    assert errors_of(data, plugins) == [
        "conf/hub.yaml: alarms.defaults.undervoltage.hysteresis: 40 V would put the clear level "
        "at 227 V, above 220 V; the alarm clears above set point + hysteresis"]


def test_low_alarm_warning_stays_in_the_standard_range(plugins):
    data = copy.deepcopy(BASE)
    data["alarms"]["defaults"]["undervoltage"]["warning"] = 500
    assert errors_of(data, plugins) == [
        "conf/hub.yaml: alarms.defaults.undervoltage.warning: 500 is outside <= 220 V"]


def test_provisioning_rules_are_checked(plugins):
    """A rules value that is not a list, and a name template with an unknown field, are config
    errors rather than a TypeError at load or a KeyError on the first unknown device."""
    data = copy.deepcopy(BASE)
    data["provisioning"] = {"enabled": True, "rules": 5}
    assert errors_of(data, plugins) == [
        "conf/hub.yaml: provisioning.rules: expected a list of rules, got 5"]
    data["provisioning"]["rules"] = [{"transport": "demo", "match": ".*", "model": "simulated",
                                      "name": "box {serial}"}]
    errs = errors_of(data, plugins)
    assert len(errs) == 1 and errs[0].startswith(
        "conf/hub.yaml: provisioning.rules[0].name: 'box {serial}' is not a name template")
