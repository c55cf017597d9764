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
