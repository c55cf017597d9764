"""hub.contracts is where transports and device models meet: models import no transport,
and the transports reach the hub only through the TransportPort."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from hub.contracts import TransportPort

ROOT = Path(__file__).resolve().parent.parent

#: the members of the port, from the protocol itself
PORT = {name for name in vars(TransportPort) if not name.startswith("_")} | set(
    TransportPort.__annotations__)


def test_device_models_import_no_transport():
    """Importing every built-in device model loads nothing from plugins.transports (a model
    depending on a transport is an arrow the design forbids, and it ran the transport's
    hook module)."""
    code = ("import sys\n"
            "import plugins.devices.modbus, plugins.devices.json_map\n"
            "import plugins.devices.binary_modbus, plugins.devices.lwm2m_ipso\n"
            "import plugins.devices.lwm2m_binary, plugins.devices.lwm2m_options\n"
            "print(sorted(m for m in sys.modules if m.startswith('plugins.transports')))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"


def hub_accesses(path: Path) -> set[str]:
    """Every ``hub.X`` / ``self.hub.X`` / ``service.hub.X`` attribute read in ``path``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Attribute):
            continue
        v = node.value
        if isinstance(v, ast.Name) and v.id == "hub" or \
                isinstance(v, ast.Attribute) and v.attr == "hub":
            found.add(node.attr)
    return found


@pytest.mark.parametrize("package", ["transports/tcp_dtu", "transports/coap_lwm2m",
                                     "transports/mqtt", "simulators/demo"])
def test_transport_uses_only_the_port(package):
    files = sorted((ROOT / "plugins" / package).glob("*.py"))
    used = set().union(*(hub_accesses(f) for f in files))
    assert used, "the scan found no hub access at all: it looks in the wrong place"
    assert used <= PORT, f"beyond the port: {sorted(used - PORT)}"


def test_the_scan_sees_a_private_access(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f(self):\n    return self.hub.journal.read_rows(0)\n")
    assert hub_accesses(bad) == {"journal"}


def test_the_hub_provides_the_port(make_hub):
    hub = make_hub({})
    assert isinstance(hub, TransportPort)
    missing = [m for m in PORT if not hasattr(hub, m)]
    assert missing == []
