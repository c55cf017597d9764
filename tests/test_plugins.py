"""The plugin manager, exercised through real entry-point metadata of test distributions."""

from __future__ import annotations

import json

import pytest

from hub import cli, hookspecs
from hub.metrics import Metrics
from hub.model import Event, EventKind, EventState
from hub.pluginmanager import PluginError, make_plugins
from tests.conftest import write_distribution

DUP = '''
from hub import hookimpl
from hub.contracts import TransportType

@hookimpl
def hub_register_transport_types():
    return [TransportType("simulator", lambda hub, name, options: None)]
'''

OBSERVERS = '''
from hub import hookimpl
seen = []

class Broken:
    @hookimpl
    def hub_event_recorded(self, event):
        raise RuntimeError("observer bug")

class Good:
    @hookimpl
    def hub_event_recorded(self, hub, event):
        seen.append(event.code)

broken = Broken()
good = Good()
'''


def test_builtin_plugins_come_from_the_entry_point_group():
    """The built-in simulator is found through the `hub` entry points of hub-server."""
    plugins = make_plugins()
    assert "simulator" in plugins.transports and "simulated" in plugins.models
    info = plugins.info("simulator")
    assert info.distribution == "hub-server"
    assert info.contributes == {"models": ["simulated"], "transports": ["simulator"]}


def test_vendor_distribution_contributes_types(vendor_dist):
    """A third-party distribution's entry point adds its transport and model types."""
    plugins = make_plugins()
    assert plugins.transports["line_tcp"].name == "line_tcp"
    assert "json_demo" in plugins.models
    assert plugins.info("hubtest_vendor").distribution == "hubtest-vendor"


def test_duplicate_type_name_names_both_plugins(site_dir):
    """Two plugins contributing one type name stop the build, naming both distributions."""
    write_distribution(site_dir, "hubtest-dup", {"dup": "hubtest_dup"}, {"hubtest_dup": DUP})
    with pytest.raises(PluginError) as e:
        make_plugins()
    msg = str(e.value)
    assert "'simulator' is contributed twice" in msg
    assert "hub-server" in msg and "hubtest-dup 1.0" in msg


def test_broken_entry_point_names_distribution_and_entry_point(site_dir):
    """A plugin that fails to import is reported with its distribution and entry point."""
    write_distribution(site_dir, "hubtest-broken", {"broken": "hubtest_broken"},
                       {"hubtest_broken": "import no_such_module_xyz\n"})
    with pytest.raises(PluginError) as e:
        make_plugins()
    msg = str(e.value)
    assert "entry point 'broken = hubtest_broken'" in msg
    assert "distribution hubtest-broken 1.0" in msg
    assert "No module named 'no_such_module_xyz'" in msg


def test_broken_plugin_is_listed_when_not_strict(site_dir):
    """`hub plugins` still loads the others and lists the broken one with its error."""
    write_distribution(site_dir, "hubtest-broken", {"broken": "hubtest_broken"},
                       {"hubtest_broken": "raise ValueError('bad vendor code')\n"})
    plugins = make_plugins(strict=False)
    assert "simulator" in plugins.transports
    assert plugins.info("broken").error == "ValueError: bad vendor code"


def test_failing_observer_is_isolated_and_counted(site_dir):
    """An observer that raises is logged and counted; the other observers still run."""
    write_distribution(site_dir, "hubtest-obs",
                       {"obs_broken": "hubtest_obs:broken", "obs_good": "hubtest_obs:good"},
                       {"hubtest_obs": OBSERVERS})
    metrics = Metrics()
    plugins = make_plugins(metrics=metrics)
    import hubtest_obs

    event = Event("d1", EventKind.ALARM, "temperature", EventState.RAISED, 1.0)
    plugins.notify("hub_event_recorded", hub=None, event=event)
    plugins.notify("hub_event_recorded", hub=None, event=event)
    assert hubtest_obs.seen == ["temperature", "temperature"]
    assert metrics.value("plugins.observer_errors", plugin="obs_broken",
                         hook="hub_event_recorded") == 2


def test_misspelled_hook_fails_loudly(site_dir):
    """An implementation of a hook nobody specified is refused (check_pending)."""
    write_distribution(site_dir, "hubtest-typo", {"typo": "hubtest_typo"}, {"hubtest_typo": (
        "from hub import hookimpl\n@hookimpl\ndef hub_event_recordd(event):\n    pass\n")})
    with pytest.raises(PluginError, match="misspelled"):
        make_plugins()


def test_autoload_switch_loads_only_the_hub_itself(vendor_dist, monkeypatch):
    """HUB_DISABLE_PLUGIN_AUTOLOAD keeps third-party distributions out."""
    monkeypatch.setenv("HUB_DISABLE_PLUGIN_AUTOLOAD", "1")
    plugins = make_plugins()
    assert "line_tcp" not in plugins.transports
    assert "simulator" in plugins.transports


def test_hub_plugins_command_lists_distribution_and_types(vendor_dist, capsys):
    """`hub plugins --json` shows each plugin's distribution and contributed types."""
    assert cli.main(["plugins", "--json"]) == 0
    rows = {r["name"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows["hubtest_vendor"]["distribution"] == "hubtest-vendor"
    assert rows["hubtest_vendor"]["contributes"] == {"models": ["json_demo"],
                                                     "transports": ["line_tcp"]}
    assert rows["simulator"]["distribution"] == "hub-server"


def test_every_hookspec_is_documented_for_vendors():
    """Each hook spec carries a docstring of several lines and a `hub_` name."""
    specs = [getattr(hookspecs, n) for n in dir(hookspecs) if n.startswith("hub_")]
    assert len(specs) >= 9
    for spec in specs:
        assert spec.__doc__ and len(spec.__doc__.strip().splitlines()) >= 2, spec.__name__


def test_disable_plugins_variable_blocks_by_name(site_dir, monkeypatch):
    """HUB_DISABLE_PLUGINS resolves a type clash by blocking one plugin; it is listed as
    blocked."""
    write_distribution(site_dir, "hubtest-dup", {"dup": "hubtest_dup"}, {"hubtest_dup": DUP})
    monkeypatch.setenv("HUB_DISABLE_PLUGINS", "dup, other")
    plugins = make_plugins()
    assert plugins.info("dup").error == "blocked"
    assert plugins.info("simulator").contributes["transports"] == ["simulator"]
