"""Benchmark of the web console (issue 17's performance section): pages interactive on
loopback with 10,000 devices, and how long a live value takes to reach the page with 200
consoles open.

    .venv/bin/python -m scripts.bench_console                 # 10,000 devices, 200 consoles
    .venv/bin/python -m scripts.bench_console --devices 2000 --clients 50 --seconds 10

What it does: the hub of scripts/bench_api.py (``--devices`` MQTT devices in
``--projects`` projects behind a Mosquitto, plus one simulated detector, ``alarmer``, that
reports every 0.25 s and raises a temperature alarm every 4 s), an admin logged in
through the console's own login form in headless Chromium (Debian's ``chromium``), then

1. each page loaded ``--loads`` times in a fresh tab: navigation start → DOMContentLoaded,
   and → its first data (home: the live stream open; monitoring list: the table; a
   device: its live stream open and its history chart drawn), p50 and max;
2. ``--clients`` SSE clients on the page's own stream endpoint (``/ui/stream?device=
   alarmer&readings=1``, with the console's session cookie; in a separate process, so
   their client CPU is not the hub's) plus ``--pages`` real browser pages on the device's
   page, for ``--seconds``: each reading's timestamp (taken when the simulator made it,
   just before its commit) → its arrival at the client / its value written into the page,
   p50 and p99.

The figures are of the machine it runs on (browser, clients and hub share it): the load
average is printed with them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

from scripts.bench_api import PASSWORD, make_projects, pct, start_hub, write_config
from tests.support.services import Mosquitto

CHROMIUM = os.environ.get("HUB_CHROMIUM", "/usr/bin/chromium")
DEVICE = "alarmer"
#: page → what says its first data is there: the page's own marks (ms since navigation
#: start, set by console.js: the stream opened, the chart drawn), so that the browser
#: driver's round trips are not counted; a table rendered on the server is there at
#: DOMContentLoaded
PAGES = {"home /": ("/", ["body[data-live-at]"]),
         "monitoring /devices": ("/devices", ["#devices-table"]),
         "monitoring, a project": ("/devices?project=p001", ["#devices-table"]),
         f"device /devices/{DEVICE}": (f"/devices/{DEVICE}",
                                       ["body[data-live-at]", "#chart[data-drawn-at]"])}
MARKS = "Math.max(0, ...[document.body.dataset.liveAt, " \
        "(document.getElementById('chart') || {dataset: {}}).dataset.drawnAt]" \
        ".filter(x => x).map(Number))"


async def sse_clients(url: str, token: str, n: int, seconds: float) -> tuple[list[float], int]:
    """Reading ts → arrival (ms) over ``n`` clients of the console's stream, and how many
    clients got at least one reading."""
    delays: list[float] = []
    got: set[int] = set()
    limits = httpx.Limits(max_connections=n + 10)
    async with httpx.AsyncClient(base_url=url, timeout=seconds + 30, limits=limits,
                                 cookies={"hub_session": token}) as c:
        async def one(k: int) -> None:
            try:
                async with c.stream("GET", "/ui/stream",
                                    params={"device": DEVICE, "readings": "1"}) as r:
                    name = ""
                    async for line in r.aiter_lines():
                        if line.startswith("event:"):
                            name = line[6:].strip()
                        elif line.startswith("data:") and name == "reading":
                            delays.append((time.time() - json.loads(line[5:])["ts"]) * 1000)
                            got.add(k)
            except httpx.HTTPError:
                pass

        tasks = [asyncio.create_task(one(k)) for k in range(n)]
        await asyncio.sleep(seconds)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return delays, len(got)


def _clients_process(url: str, token: str, n: int, seconds: float, out: mp.Queue) -> None:
    out.put(asyncio.run(sse_clients(url, token, n, seconds)))


def browser_login(context, url: str) -> None:
    page = context.new_page()
    page.goto(f"{url}/login")
    page.fill("#username", "bench")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit].primary")
    page.wait_for_url(f"{url}/")
    page.close()


def page_timings(context, url: str, loads: int) -> dict[str, tuple[list[float], list[float]]]:
    out: dict[str, tuple[list[float], list[float]]] = {}
    for name, (path, ready) in PAGES.items():
        dcl: list[float] = []
        first: list[float] = []
        for _ in range(loads):
            page = context.new_page()
            page.goto(url + path, wait_until="domcontentloaded")
            for selector in ready:
                page.wait_for_selector(selector, state="attached", timeout=30_000)
            nav = page.evaluate("performance.getEntriesByType('navigation')[0]"
                                ".domContentLoadedEventEnd")
            dcl.append(nav)
            first.append(max(nav, page.evaluate(MARKS)))
            page.close()
        out[name] = (dcl, first)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--projects", type=int, default=100)
    ap.add_argument("--loads", type=int, default=10, help="loads of each page")
    ap.add_argument("--clients", type=int, default=200, help="SSE consoles")
    ap.add_argument("--pages", type=int, default=3, help="real browser pages among them")
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = Mosquitto(str(tmp / "mosquitto")).start()
        config = write_config(tmp, args.devices, args.projects, broker.port)
        proc, url = start_hub(config)
        try:
            token = make_projects(url, args.projects, latitude=lambda p: 30 + p % 10,
                                  longitude=lambda p: 110 + p // 10)
            with httpx.Client(base_url=url, timeout=60,
                              headers={"Authorization": f"Bearer {token}"}) as c:
                total = c.get("/api/devices", params={"limit": 1}).json()["total"]
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM,
                                             args=["--headless=new"])
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                browser_login(context, url)
                timings = page_timings(context, url, args.loads)
                # the consoles: SSE clients in their own process, and real pages
                q: mp.Queue = mp.Queue()
                clients = mp.Process(target=_clients_process,
                                     args=(url, token, args.clients - args.pages,
                                           args.seconds, q))
                clients.start()
                pages = []
                for _ in range(args.pages):
                    page = context.new_page()
                    page.goto(f"{url}/devices/{DEVICE}")
                    page.wait_for_selector("[data-live-indicator].on", state="attached")
                    page.evaluate("() => { window.lags = []; document.body.addEventListener("
                                  "'hub:reading', e => window.lags.push(Date.now() - "
                                  "e.detail.ts * 1000)); }")
                    pages.append(page)
                time.sleep(args.seconds)
                in_pages: list[float] = []
                for page in pages:
                    in_pages += page.evaluate("window.lags")
                delays, reached = q.get(timeout=args.seconds + 120)
                clients.join()
                browser.close()
            load = os.getloadavg()
            print(f"console with {total:,} devices in {args.projects} projects, headless "
                  f"Chromium on loopback, {args.loads} loads per page (ms from navigation "
                  "start):")
            for name, (dcl, first) in timings.items():
                print(f"  {name:<28} DOMContentLoaded p50 {pct(dcl, .5):6.0f} max "
                      f"{max(dcl):6.0f}; first data p50 {pct(first, .5):6.0f} max "
                      f"{max(first):6.0f}")
            print(f"{args.clients} consoles ({args.clients - args.pages} SSE clients of "
                  f"/ui/stream in their own process, {reached} of them fed; {args.pages} "
                  f"browser pages), {args.seconds:g} s, reading ts → arrival:")
            print(f"  SSE clients: {len(delays)} arrivals, p50 {pct(delays, .5):.0f} ms, "
                  f"p99 {pct(delays, .99):.0f} ms, max {max(delays, default=float('nan')):.0f} ms")
            print(f"  browser pages (value written into the page): {len(in_pages)} "
                  f"arrivals, p50 {pct(in_pages, .5):.0f} ms, p99 {pct(in_pages, .99):.0f} ms")
            print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.1f} / "
                  f"{load[1]:.1f} / {load[2]:.1f} after the run")
        finally:
            proc.terminate()
            proc.wait(timeout=60)
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
