"""A Chromium page for the console's browser tests that records console errors and failed
requests (a test fails on any), and logging in through the console's form."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

from tests.support.api_hub import PASSWORD, ROOT_PASSWORD, ApiHub, populated_hub


class Page:
    """A browser page that records console errors and failed requests."""

    def __init__(self, browser, base: str, width: int = 1280) -> None:
        self.context = browser.new_context(base_url=base,
                                           viewport={"width": width, "height": 900})
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(
            f"console: {m.text} at {m.location.get('url')}"))
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("requestfailed", self._failed)
        self.page.on("response", lambda r: r.status >= 500 and self.problems.append(
            f"{r.status} {r.url}"))

    def _failed(self, request) -> None:
        # a request the browser itself cancels because the page was left (the live stream,
        # the favicon) is no failure of the hub
        if "ERR_ABORTED" in (request.failure or ""):
            return
        self.problems.append(f"request failed: {request.url} {request.failure}")

    def login(self, name: str, password: str = PASSWORD) -> None:
        p = self.page
        p.goto("/login")
        p.fill("#username", name)
        p.fill("#password", password)
        p.click("button[type=submit].primary")
        p.wait_for_load_state("load")

    def close(self) -> None:
        self.context.close()
        assert self.problems == [], self.problems


def logged_in(browse, name: str, width: int = 1280) -> Page:
    """A page logged in as ``name``, on the home page."""
    b = browse(width)
    b.login(name)
    b.page.wait_for_url(re.compile(r"/$"))
    return b


@contextlib.contextmanager
def console_hub(tmp: Path) -> Iterator[ApiHub]:
    """A running API hub with the test organisation, and ``root``'s token as ``.root``."""
    with populated_hub(tmp) as h:
        h.root = h.login("root", ROOT_PASSWORD)  # type: ignore[attr-defined]
        yield h


def phone_shot(browse, name: str, path: str, file: Path, ready: str | None = None) -> Page:
    """``path`` on a 390-px-wide phone, logged in as ``name``, screenshot to ``file``."""
    phone = logged_in(browse, name, width=390)
    phone.page.goto(path)
    if ready:
        phone.page.wait_for_selector(ready)
    phone.page.screenshot(path=file, full_page=True)
    return phone
