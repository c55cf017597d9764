"""A project report as HTML (charts inline as SVG drawn by matplotlib), PDF (WeasyPrint,
Chinese in WenQuanYi Zen Hei from Debian's fonts-wqy-zenhei, or any CJK font fontconfig
finds) and Excel (openpyxl: one sheet per table, the numbers as numbers).

matplotlib draws glyphs as paths (``svg.fonttype = "path"``), so the charts of the HTML
show Chinese wherever the page is opened; it needs a CJK font only while drawing.

In the PDF the charts are SVG images (``<img src="data:image/svg+xml...">``) with their
text as text (``svg.fonttype = "none"``, set in WeasyPrint's CJK font): inline SVG nodes
went through WeasyPrint's CSS cascade as HTML elements, and each glyph as a path was a
``<use>`` to draw — together a quarter to a third of WeasyPrint's CPU for a monthly
report (README "Benchmark", report timings)."""

from __future__ import annotations

import base64
import contextvars
import html
import io
import threading
from typing import Any

from hub.reports.data import ProjectReport

CJK_FONTS = ["WenQuanYi Zen Hei", "Noto Sans CJK SC", "Noto Sans SC", "SimHei",
             "DejaVu Sans"]
RULES = {"alarms": "报警次数", "alarm_time": "报警持续时间", "late_ack": "未及时确认",
         "open_unacked": "期末未确认", "offline": "离线时间", "faults": "故障",
         "hazards": "未销号隐患", "overdue": "整改逾期", "near_set_point": "接近设定值"}
LEVELS = {"warning": "预警", "alarm": "报警", "fault": "故障", "info": "信息"}

_CSS = """
@page { size: A4; margin: 16mm 14mm; @bottom-center { content: counter(page) " / "
        counter(pages); font-size: 9pt; color: #666; } }
body { font-family: "WenQuanYi Zen Hei", "Noto Sans CJK SC", sans-serif; font-size: 10pt;
       color: #222; }
h1 { font-size: 18pt; margin: 0 0 4pt; } h2 { font-size: 13pt; border-bottom: 1px solid #888;
     margin-top: 14pt; }
.grade { font-size: 22pt; font-weight: bold; } .meta { color: #555; }
table { border-collapse: collapse; width: 100%; margin: 6pt 0; }
th, td { border: 1px solid #bbb; padding: 2pt 5pt; text-align: left; }
td.n { text-align: right; } .chart svg, .chart img { width: 100%; height: auto; }
.pie { display: inline-block; width: 48%; } .pie svg, .pie img { width: 100%; height: auto; }
.g-优 { color: #1a7f37; } .g-良好 { color: #2f6fbf; } .g-一般隐患 { color: #b26b00; }
.g-严重隐患 { color: #c62828; }
table.narrow th, table.narrow td { font-size: 8.5pt; padding: 2pt 3pt; }
table.narrow td:nth-child(1), table.narrow td:nth-child(4), table.narrow td:last-child,
table.narrow th { white-space: nowrap; }
"""


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    plt.rcParams.update({"font.sans-serif": CJK_FONTS, "font.family": "sans-serif",
                         "axes.unicode_minus": False, "svg.fonttype": "path",
                         "svg.hashsalt": "hub-report", "font.size": 9})
    return plt


#: True while the charts are drawn for the PDF (images, text as text)
_FOR_PDF: contextvars.ContextVar[bool] = contextvars.ContextVar("for_pdf", default=False)
#: matplotlib's settings are global: one chart is saved at a time (worker threads)
_SAVING = threading.Lock()


def _svg(fig: Any, tight: bool = True) -> str:
    """``tight``: cropped to what was drawn (a second drawing of the figure: the pies,
    whose labels go where they fit); else the figure as laid out (fixed margins)."""
    import matplotlib

    buf = io.StringIO()
    with _SAVING, matplotlib.rc_context({"svg.fonttype": "none" if _FOR_PDF.get()
                                         else "path"}):
        fig.savefig(buf, format="svg", bbox_inches="tight" if tight else None,
                    metadata={"Date": None})
    _plt().close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _embed(svg: str) -> str:
    if not _FOR_PDF.get():
        return svg
    return ('<img src="data:image/svg+xml;base64,'
            + base64.b64encode(svg.encode("utf-8")).decode("ascii") + '">')


#: margins of the bar and line charts (7.2 × 2.4 in): room for the title, the y label and
#: its numbers, the day numbers
_MARGINS = {"left": 0.1, "right": 0.98, "top": 0.87, "bottom": 0.13}


def bar_chart(data: dict[str, float], title: str, ylabel: str) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.2, 2.4))
    labels = [k[-2:] if len(k) == 10 else k for k in data]  # days: the day of the month
    ax.bar(labels, list(data.values()), color="#2f6fbf")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", labelsize=7)
    fig.subplots_adjust(**_MARGINS)
    return _svg(fig, tight=False)


def line_chart(series: dict[str, dict[str, float]], title: str, ylabel: str) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.2, 2.4))
    for name, data in series.items():
        ax.plot([k[-2:] for k in data], list(data.values()), marker=".", label=name)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", labelsize=7)
    if len(series) > 1:
        ax.legend()
    fig.subplots_adjust(**_MARGINS)
    return _svg(fig, tight=False)


def pie_chart(data: dict[str, float], title: str) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(3.4, 2.6))
    items = [(k, v) for k, v in data.items() if v > 0]
    if items:
        ax.pie([v for _, v in items], labels=[k for k, _ in items], autopct="%1.0f%%")
    else:
        ax.text(0.5, 0.5, "无数据", ha="center")
        ax.axis("off")
    ax.set_title(title)
    return _svg(fig)


def _table(headers: list[str], rows: list[list[Any]], cls: str = "") -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f'<td class="n">{v:,.2f}</td>'
        if isinstance(v, int):
            return f'<td class="n">{v}</td>'
        return f"<td>{html.escape(str(v))}</td>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(cell(v) for v in r) + "</tr>" for r in rows)
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _chart(svg: str) -> str:
    return f'<div class="chart">{_embed(svg)}</div>'


def _pie(svg: str) -> str:
    return f'<div class="pie">{_embed(svg)}</div>'


def _minutes(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f} 分钟"


#: devices listed in a PDF (the lowest scores first; Excel and HTML list all): a
#: thousand-row table is fifty pages nobody reads and a minute of WeasyPrint
PDF_DEVICE_ROWS = 50


def _change(now: float, then: float | None, name: str) -> str:
    if then is None:
        return f"{name}：无可比数据"
    if then == 0:
        return f"{name}：上期 0 kWh"
    return f"{name} {(now - then) / then:+.1%}（{then:,.2f} kWh）"


def render_html(r: ProjectReport, device_rows: int | None = None) -> str:
    """The report as one HTML page; ``device_rows``: list only that many devices."""
    e = html.escape
    g = r.grade
    shown = r.devices if device_rows is None else r.devices[:device_rows]
    more = len(r.devices) - len(shown)
    this = {"daily": "本日", "weekly": "本周"}.get(r.kind, "本月")
    deductions = [[d.device, RULES.get(d.rule, d.rule), d.reason, round(d.points, 2)]
                  for d in g.deductions[:30]]
    parts = [
        f"<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">"
        f"<title>{e(r.title)} {r.period} {r.kind_name}</title><style>{_CSS}</style></head>"
        "<body>",
        f"<h1>{e(r.title)} 电气火灾监控{r.kind_name}</h1>",
        f"<p class=\"meta\">项目 {e(r.project)} · 统计周期 {r.period} · "
        f"设备 {len(r.devices)} 台</p>",
        "<h2>一、安全评级</h2>",
        f"<p>安全评分 <b>{g.score:.1f}</b> 分，评级 <span class=\"grade g-{g.grade}\">"
        f"{g.grade}</span></p>",
        "<p>扣分明细（评分规则见 README “Safety grading”）：</p>",
        _table(["设备", "规则", "原因", "扣分"], deductions) if deductions else "<p>无扣分。</p>",
        "<h2>二、报警与故障</h2>",
        f"<p>报警 {r.alarms} 次，故障 {r.faults} 次；已确认 {r.acknowledged} 次，未确认 "
        f"{r.unacknowledged} 次；平均确认用时 {_minutes(r.mean_ack_minutes)}，平均恢复用时 "
        f"{_minutes(r.mean_clear_minutes)}。</p>",
        _table(["报警类型", "次数"], [[k, v] for k, v in r.alarms_by_type.items()])
        if r.alarms_by_type else f"<p>{this}无报警。</p>",
        _table(["故障类型", "次数"], [[k, v] for k, v in r.faults_by_type.items()])
        if r.faults_by_type else "",
        _chart(line_chart({"报警": r.alarms_per_day, "故障": r.faults_per_day},
                          "每日报警与故障", "次")),
        _pie(pie_chart(r.alarms_by_type, "报警类型占比")),
        "<h2>三、用电分析</h2>",
        f"<p>{this}用电 <b>{r.energy_total:,.2f}</b> kWh，电费约 {r.cost:,.2f} 元；"
        f"{_change(r.energy_total, r.energy_year_ago, '同比')}，"
        f"{_change(r.energy_total, r.energy_period_before, '环比')}。</p>",
        _table(["时段", "电量 (kWh)"], [[k, float(v)] for k, v in r.tou.items()]),
        _chart(bar_chart(r.energy_per_day, "每日用电量", "kWh")),
        _pie(pie_chart(r.tou, "峰平谷用电占比")),
    ]
    if r.load_per_day:
        parts.append(_chart(line_chart({"平均负荷": r.load_per_day}, "每日平均负荷", "W")))
    if r.advice:
        parts.append("<p>节能建议：</p><ul>" + "".join(f"<li>{e(a)}</li>" for a in r.advice)
                     + "</ul>")
    parts += _load_html(r)
    parts += _power_quality_html(r)
    parts += [
        "<h2>四、设备运行</h2>",
        f"<p>设备在线率 {r.online_rate:.1%}。</p>",
        _table(["设备", "名称", "评级", "评分", "报警", "故障", "在线率", "用电 (kWh)"],
               [[d.device, d.name, d.grade, float(d.score), d.alarms, d.faults,
                 f"{d.online_rate:.1%}", float(d.kwh)] for d in shown]),
        f"<p>其余 {more} 台设备（评分较高）见 Excel 版。</p>" if more > 0 else "",
        "</body></html>",
    ]
    return "\n".join(parts)


PQ_INDICES = {"voltage_deviation": "电压偏差 (%)", "voltage_unbalance": "三相电压不平衡度 (%)",
              "voltage_thd": "电压总谐波畸变率 (%)", "frequency_deviation": "频率偏差 (Hz)"}
PQ_HEAD = ["测点", "指标", "样本数", "95% 概率值", "最大值", "限值", "越限时间占比", "结论"]
LOAD_HEAD = ["设备", "名称", "额定电流", "峰值负载率", "平均负载率", "过载小时", "重载小时",
             "峰值电流 (A)"]


def pq_index_name(index: str) -> str:
    if index.startswith("current_harmonic_"):
        return f"{index.rsplit('_', 1)[1]} 次谐波电流 (A)"
    return PQ_INDICES.get(index, index)


def _verdict(passed: bool | None) -> str:
    return "无数据" if passed is None else "合格" if passed else "不合格"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.1%}"


def load_rows(r: ProjectReport) -> list[list[Any]]:
    names = {d.device: d.name for d in r.devices}
    return [[x.device, names.get(x.device, x.device), x.rated, _pct(x.peak_rate),
             _pct(x.mean_rate), x.overload_hours, x.heavy_hours,
             "—" if x.peak_amperes is None else float(x.peak_amperes)] for x in r.load]


def pq_rows(r: ProjectReport) -> list[list[Any]]:
    """One row per device and index: the 95 % value (voltage deviation: the upper and
    the lower one), the maximum, the limit, the share of samples above it, pass/fail."""
    out: list[list[Any]] = []
    for dev, results in r.power_quality.items():
        for x in results:
            p95 = "—" if x.p95 is None else (f"{x.p95:+.2f} / {x.low:+.2f}" if x.low is not None
                                              else f"{x.p95:.3f}")
            out.append([dev, pq_index_name(x.index), x.samples, p95,
                        "—" if x.maximum is None else f"{x.maximum:.3f}", x.limit,
                        f"{x.above_share:.1%}", _verdict(x.passed)])
    return out


def _load_html(r: ProjectReport) -> list[str]:
    if not r.load:
        return []
    return ["<p>负载率（按各回路额定电流，README “Load rate”）：</p>",
            _table(LOAD_HEAD, load_rows(r), "narrow")]


def _power_quality_html(r: ProjectReport) -> list[str]:
    if not r.power_quality:
        return []
    days = (r.until - r.since) / 86400
    note = "" if days >= 7 else f"（统计 {days:g} 天，不足国标要求的一周，仅供参考）"
    return ["<h2>电能质量</h2>",
            f"<p>按 GB/T 12325、15543、14549、15945 评估{note}；电压偏差的 95% 概率值列"
            "上偏差 / 下偏差。</p>", _table(PQ_HEAD, pq_rows(r), "narrow")]


def render_pdf(r: ProjectReport, html_text: str | None = None) -> bytes:
    """The PDF; ``html_text``: a page to print instead of the report's own for the PDF
    (:func:`pdf_html`)."""
    from weasyprint import HTML

    return HTML(string=html_text or pdf_html(r)).write_pdf()


def pdf_html(r: ProjectReport) -> str:
    """The page the PDF prints: the first devices only, charts as SVG images."""
    token = _FOR_PDF.set(True)
    try:
        return render_html(r, PDF_DEVICE_ROWS)
    finally:
        _FOR_PDF.reset(token)


def render_xlsx(r: ProjectReport) -> bytes:
    from openpyxl import Workbook
    from openpyxl.chart import BarChart, Reference

    wb = Workbook()
    ws = wb.active
    ws.title = "概要"
    for row in (["项目", r.project], ["名称", r.title], ["报告", r.kind_name],
                ["统计周期", r.period],
                ["安全评分", r.grade.score], ["安全评级", r.grade.grade],
                ["报警次数", r.alarms], ["故障次数", r.faults],
                ["已确认", r.acknowledged], ["未确认", r.unacknowledged],
                ["平均确认用时 (分钟)", r.mean_ack_minutes], ["用电量 (kWh)", r.energy_total],
                ["电费 (元)", r.cost], ["去年同期用电量 (kWh)", r.energy_year_ago],
                ["上期用电量 (kWh)", r.energy_period_before],
                ["设备在线率", round(r.online_rate, 4)],
                *[[f"{k} (kWh)", v] for k, v in r.tou.items()]):
        ws.append(row)
    ws.column_dimensions["A"].width = 22
    d = wb.create_sheet("扣分")
    d.append(["设备", "规则", "原因", "扣分"])
    for x in r.grade.deductions:
        d.append([x.device, x.rule, x.reason, round(x.points, 3)])
    en = wb.create_sheet("电能")
    en.append(["日期", "用电量 (kWh)", "平均负荷 (W)", "报警", "故障"])
    for day, kwh in r.energy_per_day.items():
        en.append([day, kwh, r.load_per_day.get(day), r.alarms_per_day.get(day, 0),
                   r.faults_per_day.get(day, 0)])
    if r.energy_per_day:
        chart = BarChart()
        chart.title = "每日用电量"
        chart.add_data(Reference(en, min_col=2, min_row=1, max_row=len(r.energy_per_day) + 1),
                       titles_from_data=True)
        chart.set_categories(Reference(en, min_col=1, min_row=2,
                                       max_row=len(r.energy_per_day) + 1))
        en.add_chart(chart, "G2")
    al = wb.create_sheet("报警")
    al.append(["类型", "次数"])
    for k, v in r.alarms_by_type.items():
        al.append([k, v])
    al.append([])
    al.append(["级别", "次数"])
    for k, v in r.alarms_by_level.items():
        al.append([LEVELS.get(k, k), v])
    dv = wb.create_sheet("设备")
    dv.append(["设备", "名称", "评级", "评分", "报警", "故障", "在线率", "用电量 (kWh)"])
    for x in r.devices:
        dv.append([x.device, x.name, x.grade, x.score, x.alarms, x.faults,
                   round(x.online_rate, 4), round(x.kwh, 3)])
    if r.load:
        lo = wb.create_sheet("负载率")
        lo.append(LOAD_HEAD)
        for x in r.load:
            lo.append([x.device, next((d.name for d in r.devices if d.device == x.device),
                                      x.device), x.rated, x.peak_rate, x.mean_rate,
                       x.overload_hours, x.heavy_hours, x.peak_amperes])
    if r.power_quality:
        pq = wb.create_sheet("电能质量")
        pq.append(["测点", "指标", "样本数", "95% 概率值", "95% 下偏差", "最大值", "限值",
                   "越限时间占比", "结论"])
        for dev, results in r.power_quality.items():
            for x in results:
                pq.append([dev, pq_index_name(x.index), x.samples, x.p95, x.low, x.maximum,
                           x.limit, round(x.above_share, 4), _verdict(x.passed)])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


FORMATS = {"html": "text/html; charset=utf-8", "pdf": "application/pdf",
           "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


def render(r: ProjectReport, fmt: str) -> bytes:
    if fmt == "html":
        return render_html(r).encode("utf-8")
    if fmt == "pdf":
        return render_pdf(r)
    if fmt == "xlsx":
        return render_xlsx(r)
    raise ValueError(f"format: one of {', '.join(FORMATS)}")
