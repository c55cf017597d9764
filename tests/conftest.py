"""Fixtures shared by unit and integration tests: installing test distributions through real
entry-point metadata (tests/support/distribution.py), log capture, a VictoriaMetrics, a
PostgreSQL and platform stores on both backends (tests/support/postgres.py)."""

from __future__ import annotations

import importlib
import os
import sys

import pytest

from tests.support.distribution import PLUGINS, write_distribution
from tests.support.postgres import (  # noqa: F401  (fixtures: PostgreSQL, stores on both backends)
    make_store,
    pg_dsn,
    postgres,
    store_backend,
)
from tests.support.services import victoria  # noqa: F401  (fixture: a VictoriaMetrics per test)


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
    """The toy vendor plugin of tests/support/plugins installed as distribution
    ``hubtest-vendor``."""
    write_distribution(site_dir, "hubtest-vendor", {"hubtest_vendor": "hubtest_vendor"},
                       {"hubtest_vendor": (PLUGINS / "hubtest_vendor.py").read_text()})
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
