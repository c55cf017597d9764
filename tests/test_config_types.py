"""Every option hub/config.py reads, given a value of the wrong type or out of range, is a
configuration error naming the file and the key path, never a traceback (issue 12:
``journal.commit_interval_ms: "20"`` crashed ``hub check`` with a TypeError)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from hub.config import check_config
from hub.pluginmanager import make_plugins
from hub.validate import ConfigError

FILE = "conf/hub.yaml"

#: a configuration that sets every key hub/config.py reads (plugins' own options aside)
FULL: dict[str, Any] = {
    "hub": {"name": "hub", "state_dir": "/tmp/hub-state", "log_level": "info",
            "log_format": "text", "gc": {"freeze": True, "threshold": [50000, 20, 100]}},
    "journal": {"path": "/tmp/hub-state/j.sqlite", "commit_interval_ms": 20,
                "max_batch": 20000, "max_size_mb": 2048, "warn_ratio": 0.9,
                "retention_days": 730, "synchronous": "normal", "prune_interval": 60},
    "audit": {"path": "/tmp/hub-state/a.sqlite", "key_file": "/tmp/hub-state/nokey.pem",
              "checkpoint_every": 1000, "checkpoint_interval": 300},
    "presence": {"heartbeat_interval": 60, "timeout_count": 3},
    "alarms": {"warning_ratio": 0.9, "defaults": {
        "temperature": {"alarm": 80, "warning": 70, "hysteresis": 2, "delay": 5,
                        "clear_delay": 1, "enabled": True},
        "overcurrent": {"enabled": False}}},
    "models": {"sim": {"type": "simulated", "heartbeat": {"interval": 5, "timeout_count": 3}}},
    "transports": {"demo": {"type": "simulator", "interval": 5}},
    "sinks": {},
    "devices": [{"id": "d1", "model": "sim", "transport": "demo", "address": "normal",
                 "name": "D1", "location": "1F", "project": "p", "group": "g",
                 "heartbeat": {"interval": 5, "timeout_count": 3},
                 "alarms": {"temperature": {"alarm": 75, "warning_ratio": 0.8}}}],
    "provisioning": {"enabled": True, "rules": [
        {"transport": "demo", "match": "^x", "model": "sim", "project": "p",
         "name": "n-{id}"}]},
}

#: keys whose value belongs to a plugin (checked by its check_options/check_address)
PLUGIN_OWNED = {("transports", "demo", "interval"), ("devices", 0, "address")}

REFERENCES = ("is not a configured", "is neither a configured", "is not a known model")
BAD: list[Any] = ["20", [20, 1], {"k": 1}, True, 5000, -1, 1e300, float("nan"), None]


def leaves(node: Any, path: tuple = ()) -> list[tuple]:
    """Every key path of ``node``, inner sections included (a section may be wrong too)."""
    out = [path] if path else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += leaves(v, path + (k,))
    elif isinstance(node, list) and not all(isinstance(x, (int, float)) for x in node):
        for i, v in enumerate(node):
            out += leaves(v, path + (i,))
    return out


def set_at(base: dict, path: tuple, value: Any) -> dict:
    """A deep copy of ``base`` with ``value`` at the key ``path``."""
    data = copy.deepcopy(base)
    node = data
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return data


def with_value(path: tuple, value: Any) -> dict:
    return set_at(FULL, path, value)


def dotted(path: tuple) -> str:
    out = ""
    for k in path:
        out += f"[{k}]" if isinstance(k, int) else ("." if out else "") + k
    return out


@pytest.fixture(scope="module")
def plugins():
    return make_plugins()


def test_the_full_configuration_is_valid(plugins):
    cfg = check_config(FULL, FILE, plugins)
    assert cfg.journal.commit_interval == 0.02 and cfg.devices[0].group == "g"


KEYS = [p for p in leaves(FULL) if p not in PLUGIN_OWNED]


@pytest.mark.parametrize("path", KEYS, ids=dotted)
def test_a_bad_value_anywhere_is_a_config_error_naming_the_key(plugins, path):
    """Each bad value either is acceptable there (a number as a name, null for an optional
    section) or is refused with the file and the key path (or a path inside it); any other
    exception fails the test."""
    for value in BAD:
        try:
            check_config(with_value(path, value), FILE, plugins)
        except ConfigError as e:
            key = dotted(path)
            assert all(line.startswith(f"{FILE}: ") for line in e.errors), e.errors
            # the key itself or a key inside it; or, for a section emptied, the keys that
            # referred to what it declared
            parent = dotted(path[:-1])
            named = [line for line in e.errors if f"{FILE}: {key}" in line
                     or (parent and line.startswith(f"{FILE}: {parent}."))]
            refs = [line for line in e.errors if any(r in line for r in REFERENCES)]
            assert named or len(refs) == len(e.errors), (value, e.errors)


@pytest.mark.parametrize("value, expected", [
    ("20", "journal.commit_interval_ms: expected a number, got '20'"),
    ([20], "journal.commit_interval_ms: expected a number, got a list"),
    (5000, "journal.commit_interval_ms: 5000 is outside 0..1000 ms"),
])
def test_commit_interval_of_the_wrong_type(plugins, value, expected):
    """The issue's own examples, word for word."""
    with pytest.raises(ConfigError) as e:
        check_config(with_value(("journal", "commit_interval_ms"), value), FILE, plugins)
    assert e.value.errors == [f"{FILE}: {expected}"]


def test_hub_check_reports_instead_of_a_traceback(tmp_path, capsys):
    from hub.cli import main

    path = tmp_path / "hub.yaml"
    path.write_text('journal: {commit_interval_ms: "20"}\nhub: {state_dir: [var]}\n')
    with pytest.raises(SystemExit) as done:
        main(["check", "-c", str(path)])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert f"{path}: journal.commit_interval_ms: expected a number, got '20'" in err
    assert f"{path}: hub.state_dir: expected a string, got a list" in err


def test_a_check_that_crashes_on_a_type_is_still_a_config_error():
    """A plugin's check_options that did not expect a list (``quantity: [a, b]`` looked up
    in a dict raised TypeError in json_map, lwm2m and sms options) reports that key and
    lets the other errors through, instead of a traceback."""
    from hub.validate import Checker, Path

    def check_options(options):
        return {"temperature": 1}[options["quantity"]]

    checker = Checker()
    root = Path(FILE)
    assert checker.check(root / "models" / "m", check_options, {"quantity": ["a"]}) is None
    checker.error(root / "hub" / "name", "another error")
    with pytest.raises(ConfigError) as e:
        checker.raise_if_any()
    assert e.value.errors[0].startswith(f"{FILE}: models.m: could not be checked: TypeError: "
                                        "unhashable type: 'list'")
    assert len(e.value.errors) == 2
