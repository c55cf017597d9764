"""conf/systemd/hub.service: hardened, and accepted by ``systemd-analyze verify``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.hubproc import BIN

UNIT = Path(__file__).parent.parent / "conf" / "systemd" / "hub.service"
INSTALLED = "/opt/hub/.venv/bin/hub"
ANALYZE = shutil.which("systemd-analyze")


def settings() -> dict[tuple[str, str], str]:
    """(section, key) -> value of the active (uncommented) lines."""
    out, section = {}, ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            assert (section, key) not in out, f"{key} set twice in [{section}]"
            out[(section, key)] = value
    return out


def test_the_unit_is_hardened_and_restarts():
    s = settings()
    svc = {k: v for (sec, k), v in s.items() if sec == "Service"}
    assert svc["User"] == "hub" and svc["Group"] == "hub"
    assert svc["ExecStart"] == f"{INSTALLED} run -c /etc/hub/hub.yaml"
    assert svc["NoNewPrivileges"] == "yes" and svc["PrivateTmp"] == "yes"
    assert svc["ProtectSystem"] == "strict" and svc["ProtectHome"] == "yes"
    assert svc["ReadWritePaths"] == "/var/lib/hub" == svc["WorkingDirectory"]
    assert svc["Restart"] == "on-failure" and svc["RestartSec"] == "5s"
    assert s[("Install", "WantedBy")] == "multi-user.target"


def verify(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    # verify checks that ExecStart's program exists: point it at this checkout's hub
    unit = tmp_path / "hub.service"
    unit.write_text(text.replace(INSTALLED, str(BIN / "hub")))
    return subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed (Debian "
                    "package systemd; scripts/install-system-deps.sh installs it)")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    done = verify(tmp_path, UNIT.read_text())
    assert done.returncode == 0 and done.stderr == "", done.stderr
    # ... and would say so if it were wrong (a key in the wrong section, a bad value)
    broken = UNIT.read_text().replace("StartLimitIntervalSec=600\n", "").replace(
        "RestartSec=5s", "RestartSec=5s\nStartLimitIntervalSec=600\nProtectSystem=sometimes")
    done = verify(tmp_path, broken)
    assert "Unknown key 'StartLimitIntervalSec' in section [Service]" in done.stderr
    assert "protect system value, ignoring: sometimes" in done.stderr
