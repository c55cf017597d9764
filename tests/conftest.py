"""Shared fixtures: installing test distributions through real entry-point metadata."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest

from tests.services import victoria  # noqa: F401  (fixture: a VictoriaMetrics per test)

HERE = Path(__file__).parent


def write_distribution(site: Path, name: str, entry_points: dict[str, str],
                       modules: dict[str, str], version: str = "1.0") -> None:
    """Lay out an installed distribution in ``site``: its modules and a ``.dist-info`` with
    METADATA and entry_points.txt, exactly what pip would leave behind."""
    site.mkdir(parents=True, exist_ok=True)
    for mod, source in modules.items():
        (site / f"{mod}.py").write_text(source, encoding="utf-8")
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    eps = "[hub]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(eps)


@pytest.fixture
def site_dir(tmp_path, monkeypatch):
    """A directory on sys.path (and PYTHONPATH, for subprocesses) that test distributions
    are installed into; forgotten after the test."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    before = set(sys.modules)
    importlib.invalidate_caches()
    yield site
    for mod in set(sys.modules) - before:
        if str(site) in (getattr(sys.modules[mod], "__file__", "") or ""):
            del sys.modules[mod]
    importlib.invalidate_caches()


@pytest.fixture
def vendor_dist(site_dir):
    """The toy vendor plugin of tests/plugins installed as distribution ``hubtest-vendor``."""
    write_distribution(site_dir, "hubtest-vendor", {"hubtest_vendor": "hubtest_vendor"},
                       {"hubtest_vendor": (HERE / "plugins" / "hubtest_vendor.py").read_text()})
    importlib.invalidate_caches()
    return site_dir


@pytest.fixture
def logged():
    """Every log line (formatted) emitted during the test."""
    from twisted.logger import formatEvent, globalLogPublisher

    lines: list[str] = []

    def observe(event):
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)
