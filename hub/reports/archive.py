"""Reports kept on disk: ``<state_dir>/reports/<project>/<kind>/<period>.<format>``, one
file per document, written whole and renamed into place (a reader never sees half a PDF).
Listing is a directory walk: a project has a few hundred reports a year."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hub.reports.data import KINDS, LABELS

if TYPE_CHECKING:
    from hub.analysis.inputs import GradingSources
    from hub.analysis.settings import AnalysisSettings
    from hub.reports.data import ProjectReport

#: project codes that may name a directory as they are
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class StoredReport:
    project: str
    kind: str
    period: str
    format: str
    size: int
    created: float


def reports_dir(state_dir: str) -> str:
    return os.path.join(state_dir, "reports")


class ReportArchive:
    def __init__(self, root: str) -> None:
        self.root = root

    def _dir(self, project: str) -> str:
        name = project if _SAFE.match(project) else "_" + project.encode().hex()
        return os.path.join(self.root, name)

    def path(self, project: str, kind: str, period: str, fmt: str) -> str:
        if kind not in KINDS or not re.match(LABELS[kind], period):
            raise ValueError(f"no {kind} period {period!r}")
        if not re.match(r"^[a-z]{3,4}$", fmt):
            raise ValueError(f"format {fmt!r}")
        return os.path.join(self._dir(project), kind, f"{period}.{fmt}")

    def save(self, project: str, kind: str, period: str, docs: dict[str, bytes]
             ) -> list[StoredReport]:
        out = []
        for fmt, body in docs.items():
            path = self.path(project, kind, period, fmt)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = path + ".part"
            with open(tmp, "wb") as f:
                f.write(body)
            os.replace(tmp, path)
            st = os.stat(path)
            out.append(StoredReport(project, kind, period, fmt, st.st_size, st.st_mtime))
        return out

    def exists(self, project: str, kind: str, period: str, fmt: str) -> bool:
        return os.path.exists(self.path(project, kind, period, fmt))

    def read(self, project: str, kind: str, period: str, fmt: str) -> bytes | None:
        try:
            with open(self.path(project, kind, period, fmt), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def list(self, project: str, kind: str | None = None) -> list[StoredReport]:
        """Newest period first."""
        out = []
        for k in ([kind] if kind else list(KINDS)):
            d = os.path.join(self._dir(project), k)
            try:
                names = os.listdir(d)
            except FileNotFoundError:
                continue
            for name in names:
                period, _, fmt = name.rpartition(".")
                if not re.match(LABELS[k], period) or name.endswith(".part"):
                    continue
                st = os.stat(os.path.join(d, name))
                out.append(StoredReport(project, k, period, fmt, st.st_size, st.st_mtime))
        return sorted(out, key=lambda r: (r.period, r.kind, r.format), reverse=True)


def make_documents(journal: Any, store: Any, settings: AnalysisSettings, project: str,
                   devices: dict[str, str], title: str, kind: str, period: str,
                   formats: tuple[str, ...], sources: GradingSources | None = None
                   ) -> tuple[ProjectReport, dict[str, bytes]]:
    """The report of ``project``'s ``kind`` period ``period`` and its documents (one per
    format): what the schedule, the API and ``hub report`` all make."""
    from hub.reports.data import build_report, period_range
    from hub.reports.render import render_html, render_pdf, render_xlsx

    tz = store.tz_offset if store is not None else settings.tz_offset
    since, until = period_range(kind, period, tz)
    report = build_report(journal, store, project, devices, since, until, settings, period,
                          title, kind, sources)
    docs: dict[str, bytes] = {}
    for fmt in formats:
        if fmt == "html":
            docs[fmt] = render_html(report).encode("utf-8")
        elif fmt == "pdf":
            docs[fmt] = render_pdf(report)
        elif fmt == "xlsx":
            docs[fmt] = render_xlsx(report)
        else:
            raise ValueError(f"format {fmt!r}")
    return report, docs


def summary(r: ProjectReport, link: str = "") -> str:
    """One paragraph for a text message: grade, alarms, energy, and where to read it."""
    text = (f"【{r.title}{r.kind_name}】{r.period}：安全评级 {r.grade.grade}"
            f"（{r.grade.score:.1f} 分），报警 {r.alarms} 次，故障 {r.faults} 次，"
            f"用电 {r.energy_total:,.1f} kWh。")
    return text + (f" 下载：{link}" if link else "")
