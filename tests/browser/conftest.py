"""Browser tests: Debian's Chromium driven by Playwright for Python (never its own browser
download). Marked ``browser`` so a run can leave them out (``-m "not browser"``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.console_browser import Page

CHROMIUM = os.environ.get("HUB_CHROMIUM", "/usr/bin/chromium")


def pytest_collection_modifyitems(items):
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """Per module, not per session: while Playwright's sync API is open an event loop runs
    in the main thread, and every later test calling asyncio.run() would fail."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-system-deps.sh (Debian "
                    "package chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless=new"])
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def shots(tmp_path_factory) -> Path:
    """One folder for every page's screenshots: ``<pytest's base temp>/screenshots``
    (README, Web console)."""
    folder = tmp_path_factory.getbasetemp() / "screenshots"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture
def browse(chromium, hub):
    opened: list[Page] = []

    def make(width: int = 1280) -> Page:
        page = Page(chromium, hub.url, width)
        opened.append(page)
        return page
    yield make
    for page in opened:
        page.close()
