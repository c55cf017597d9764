"""History curves and reports in headless Chromium against a real hub: two circuits
compared on one chart, zoomed, exported as CSV and Excel (the zoomed window only); the
monthly report viewed and downloaded as PDF and Excel; a viewer of p2 gets nothing of p1
from either page. Screenshots at desktop and phone width."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime

import pytest
from openpyxl import load_workbook

from tests.support.console_browser import console_hub, logged_in, phone_shot
from tests.support.services import wait_until

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with console_hub(tmp_path_factory.mktemp("console-data")) as h:
        with h.client(h.root) as c:
            r = c.post("/api/devices", json={"id": "d3", "name": "三号箱", "project": "p1",
                                             "model": "simulated", "transport": "demo",
                                             "address": "leakage", "location": "3F"})
            assert r.status_code == 201, r.text

        def readings():
            with h.client(h.root) as c:
                return all(c.get(f"/api/devices/{d}/readings",
                                 params={"quantity": "temperature"}).json()
                           for d in ("d1", "d3"))
        wait_until(readings, 30, interval=0.2, what="temperatures of d1 and d3")
        yield h



def download(page, selector: str) -> bytes:
    with page.expect_download() as dl:
        page.click(selector)
    with open(dl.value.path(), "rb") as f:
        return f.read()


def test_two_circuits_on_one_chart_zoomed_and_exported(hub, browse, shots):
    b = logged_in(browse, "op1")
    p = b.page
    p.goto("/history")
    assert p.inner_text("h1") == "历史曲线"
    p.select_option("#h-quantity", "temperature")
    p.select_option("#h-range", "1h")
    p.check("#h-devices input[value=d1]")
    p.check("#h-devices input[value=d3]")
    p.click("#h-draw")
    p.wait_for_selector("#compare-chart[data-series]:not([data-series='0'])")
    legend = p.evaluate("echarts.getInstanceByDom(document.getElementById('compare-chart'))"
                        ".getOption().series.map(s => s.name)")
    assert any(n.startswith("一号箱") for n in legend) and any(n.startswith("三号箱")
                                                              for n in legend), legend
    p.screenshot(path=shots / "history-desktop.png", full_page=True)
    text = download(p, "#export-csv").decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:3] == ["时间", "设备编号", "设备名称"]
    assert {r[1] for r in rows[1:]} == {"d1", "d3"} and all(r[4] == "温度" for r in rows[1:])
    book = load_workbook(io.BytesIO(download(p, "#export-xlsx")))
    sheet = list(book.active.iter_rows(values_only=True))
    assert len(sheet) == len(rows) and sheet[0][0] == "时间"
    assert isinstance(sheet[1][6], float)  # numbers stay numbers in Excel
    # zoom into the newest half: the exports then hold that window only
    p.evaluate("echarts.getInstanceByDom(document.getElementById('compare-chart'))"
               ".dispatchAction({type: 'dataZoom', start: 50, end: 100})")
    p.wait_for_selector("#compare-chart[data-zoomed]")
    since = float(re.search(r"since=([\d.]+)", p.get_attribute("#export-csv", "href"))[1])
    start = datetime.fromtimestamp(int(since)).strftime("%Y-%m-%d %H:%M:%S")
    zoomed = list(csv.reader(io.StringIO(download(p, "#export-csv").decode("utf-8-sig"))))
    assert len(zoomed) > 1 and all(r[0] >= start for r in zoomed[1:])
    assert any(r[0] < start for r in rows[1:])  # the whole range had earlier points
    phone_shot(browse, "op1", p.url, shots / "history-phone.png", "#compare-chart canvas")


def test_monthly_reports_viewed_and_downloaded(hub, browse, shots):
    b = logged_in(browse, "mgr1")
    p = b.page
    p.goto("/reports")
    assert p.inner_text("h1") == "数据汇总 / 报表"
    assert p.locator("#reports-table tr[data-month]").count() == 12
    month = p.get_attribute("#reports-table tr[data-month]", "data-month")
    assert month == datetime.now().strftime("%Y-%m")
    assert download(p, "#reports-table tr[data-month] a[data-format=pdf]")[:5] == b"%PDF-"
    assert download(p, "#reports-table tr[data-month] a[data-format=xlsx]")[:2] == b"PK"
    with p.context.expect_page() as opened:
        p.click("#reports-table tr[data-month] a[data-format=view]")
    doc = opened.value
    doc.wait_for_load_state()
    assert "月度报告" in doc.title()
    doc.close()
    p.screenshot(path=shots / "reports-desktop.png", full_page=True)
    phone_shot(browse, "mgr1", "/reports", shots / "reports-phone.png")


def test_a_viewer_of_p2_gets_nothing_of_p1(hub, browse):
    b = logged_in(browse, "view2")
    p = b.page
    p.goto("/reports")
    assert p.eval_on_selector_all("select[name=project] option",
                                  "os => os.map(o => o.value)") == ["p2"]
    month = datetime.now().strftime("%Y-%m")
    assert p.goto(f"/reports/{hub.ids['p1']}/{month}.pdf").status == 404
    p.goto("/history?project=p1&quantity=temperature&range=1h&device=d1")
    assert p.locator("#h-devices input[value=d1]").count() == 0
    p.wait_for_selector("#compare-chart[data-series='0']")
    body = p.context.request.get(
        f"{hub.url}/history/export.csv?quantity=temperature&range=1h&device=d1").body()
    assert len(list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))) == 1  # header only
    b.problems = [x for x in b.problems if not re.search(r"404|\.pdf", x)]


def test_kept_reports_by_kind_and_made_now_by_an_operator(hub, browse, shots):
    b = logged_in(browse, "op1")
    p = b.page
    p.goto("/reports?kind=weekly")
    assert p.get_attribute("nav.tabs a[aria-current=page]", "data-kind") == "weekly"
    p.click("nav.tabs a[data-kind=daily]")
    p.wait_for_url(re.compile(r"kind=daily"))
    assert "尚无已生成的日报" in p.inner_text("#kept-table")
    # a period the API does not take: its refusal is a sentence
    p.fill("#make-report input[name=period]", "昨天")
    p.click("#make-report button[type=submit]")
    p.wait_for_selector("#flash-error")
    assert p.inner_text("#flash-error").startswith("未能生成：") and \
        "YYYY-MM-DD" in p.inner_text("#flash-error")
    # the last whole day, made now
    p.click("#make-report button[type=submit]")
    p.wait_for_selector("#flash-notice")
    rows = p.locator("#kept-table tr[data-period]")
    assert rows.count() == 1
    period = rows.first.get_attribute("data-period")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", period) and period in p.inner_text("#flash-notice")
    assert download(p, "#kept-table tr[data-period] a[data-format=pdf]")[:5] == b"%PDF-"
    # a weekly one too: the tab shows it, the daily tab keeps its own
    p.select_option("#make-report select[name=kind]", "weekly")
    p.click("#make-report button[type=submit]")
    p.wait_for_selector("#flash-notice")
    assert p.get_attribute("nav.tabs a[aria-current=page]", "data-kind") == "weekly"
    week = p.get_attribute("#kept-table tr[data-period]", "data-period")
    assert re.fullmatch(r"\d{4}-W\d\d", week)
    p.screenshot(path=shots / "reports-kept-desktop.png", full_page=True)
    phone_shot(browse, "op1", "/reports?kind=weekly", shots / "reports-kept-phone.png")
    # a viewer makes none and gets nothing of p1's
    v = logged_in(browse, "view2")
    v.page.goto("/reports?kind=daily")
    assert v.page.locator("#make-report").count() == 0
    assert v.page.locator("#kept-table tr[data-period]").count() == 0
    assert v.page.goto(f"/reports/{hub.ids['p1']}/kept/daily/{period}.pdf").status == 404
    v.problems = [x for x in v.problems if not re.search(r"404|\.pdf", x)]
