"""The README's examples run: the vendor plugin and its byte-vector test."""

from __future__ import annotations

import re
from pathlib import Path

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_vendor_plugin_example_runs():
    """The README's device model decodes its own example vector and refuses bad input."""
    plugin_src, test_src = python_blocks()[:2]
    ns: dict = {}
    exec(compile(plugin_src, "README.md:plugin", "exec"), ns)
    exec(compile(test_src, "README.md:test", "exec"), ns)
    ns["test_frame"]()
    types = ns["hub_register_device_models"]()
    assert types[0].name == "acme_efd"
    from hub.types import DecodeError

    model = types[0].factory(None)
    try:
        model.decode("d1", b"\x00", 0.0)
    except DecodeError as e:
        assert "expected 4 bytes" in str(e)
    else:
        raise AssertionError("a short frame was accepted")


def test_readme_opens_with_the_two_commands():
    """README starts with `make run` and `make test`, the commands CI and users rely on."""
    head = README.split("\n\n", 2)[1]
    assert "make run" in head and "make test" in head


def test_readme_dtu_configuration_is_valid():
    """The DTU example configuration in the README passes the configuration check."""
    import yaml

    from hub.config import check_config
    from hub.pluginmanager import make_plugins

    blocks = re.findall(r"```yaml\n(.*?)```", README, flags=re.S)
    dtu = next(b for b in blocks if "type: tcp_dtu" in b and "registration:" in b)
    cfg = check_config(yaml.safe_load(dtu), "README.md", make_plugins())
    assert [d.address_key for d in cfg.devices] == [("861234567890123", 1),
                                                     ("861234567890123", 2)]


def test_readme_lwm2m_configurations_are_valid(monkeypatch):
    """The NB-IoT examples in the README (the transport with its device, the two LwM2M
    models) pass the configuration check; so does the package docstring's example."""
    import yaml

    from hub.config import check_config
    from hub.pluginmanager import make_plugins
    from plugins.transports import coap_lwm2m

    monkeypatch.chdir(Path(__file__).parent.parent)  # the frame model's map is repo-relative
    blocks = re.findall(r"```yaml\n(.*?)```", README, flags=re.S)
    nb = next(b for b in blocks if "type: coap_lwm2m" in b)
    models = next(b for b in blocks if "type: lwm2m_binary" in b)
    doc = coap_lwm2m.__doc__.split("::", 1)[1].split("\n\n")[1]
    plugins = make_plugins()
    cfg = check_config(yaml.safe_load(nb), "README.md", plugins)
    assert [(d.id, d.model) for d in cfg.devices] == [("efd-21", "nb-efd")]
    assert check_config(yaml.safe_load(doc), "coap_lwm2m", plugins).devices[0].id == "efd-1"
    both = {**yaml.safe_load(models), "transports": yaml.safe_load(nb)["transports"]}
    cfg = check_config(both, "README.md", plugins)
    assert set(cfg.models) == {"nb-efd", "nb-efd-frames"}


def test_readme_sink_example_runs(tmp_path):
    from hub.testing import SinkHarness

    sink_src, test_src = [b for b in python_blocks() if "JsonLinesSink" in b][:2]
    ns: dict = {}
    exec(compile(sink_src, "README:sink", "exec"), ns)
    exec(compile(test_src, "README:sink-test", "exec"), ns)
    harness = SinkHarness(str(tmp_path / "var"))
    try:
        ns["test_an_alarm_is_sent_again_after_an_outage"](harness)
    finally:
        harness.close()
