"""Daily, weekly and monthly reports: their periods, when they are due, the scheduler on a
task.Clock, the archive, the push through a channel, `hub report daily|weekly`."""

from __future__ import annotations

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from hub.reports.archive import ReportArchive
from hub.reports.data import last_period, period_of, period_range
from hub.reports.schedule import Project, ReportSchedule, ReportScheduler, due

TZ = 8 * 3600
#: 2026-01-05 00:00 +08:00, a Monday
MON = 1_767_542_400.0


def test_periods_are_local_days_iso_weeks_and_months():
    assert period_range("daily", "2026-01-05", TZ) == (MON, MON + 86400)
    assert period_range("weekly", "2026-W02", TZ) == (MON, MON + 7 * 86400)
    assert period_range("monthly", "2026-01", TZ)[1] - period_range(
        "monthly", "2026-01", TZ)[0] == 31 * 86400
    assert period_of("weekly", MON - 1, TZ) == "2026-W01"
    assert period_of("daily", MON - 1, TZ) == "2026-01-04"
    assert last_period("monthly", MON, TZ) == "2025-12"
    assert last_period("weekly", MON + 3600, TZ) == "2026-W01"
    with pytest.raises(ValueError, match="not a weekly period"):
        period_range("weekly", "2026-02", TZ)


def test_a_report_is_due_at_its_time_and_only_the_newest_one():
    s = ReportSchedule.from_mapping({"daily": "07:00", "weekly": "1 07:30",
                                     "monthly": "2 08:00"})
    none = lambda kind, period: False  # noqa: E731
    # Monday 06:59: yesterday's daily not yet; the one before; last week's not yet either
    at = MON + 6 * 3600 + 59 * 60
    assert due(s, at, TZ, none) == [("daily", "2026-01-03"), ("weekly", "2025-W52"),
                                    ("monthly", "2025-12")]
    at = MON + 7 * 3600 + 30 * 60
    assert due(s, at, TZ, none) == [("daily", "2026-01-04"), ("weekly", "2026-W01"),
                                    ("monthly", "2025-12")]
    # December's on the 2nd at 08:00 (1 January 2026 was a Thursday)
    assert ("monthly", "2025-11") in due(s, MON - 4 * 86400 + 7 * 3600, TZ, none)
    assert due(s, at, TZ, lambda k, p: True) == []
    off = ReportSchedule.from_mapping({"weekly": None, "monthly": None})
    assert [k for k, _ in due(off, at, TZ, none)] == ["daily"]


@pytest.mark.parametrize("bad,match", [({"daily": "7"}, "HH:MM"),
                                       ({"weekly": "8 07:00"}, "day 1..7"),
                                       ({"formats": ["doc"]}, "formats"),
                                       ({"notify": [{"channel": "x"}]}, "notify"),
                                       ({"hourly": "07:00"}, "unknown")])
def test_the_schedule_configuration_is_checked(bad, match):
    with pytest.raises(ValueError, match=match):
        ReportSchedule.from_mapping(bad)


def test_the_scheduler_makes_due_reports_on_the_clock_and_pushes_them(tmp_path):
    clock = Clock()
    clock.advance(MON + 6 * 3600)
    archive = ReportArchive(str(tmp_path / "reports"))
    pushed = []

    def produce(p, kind, period):
        archive.save(p.code, kind, period, {"pdf": b"%PDF-" + period.encode()})
        return f"{kind} {period}"

    def notify(p, kind, period, result):
        pushed.append((p.code, result))
    sched = ReportScheduler(clock, ReportSchedule(weekly=None, monthly=None), TZ,
                            lambda: [Project(1, "p1", "一号")],
                            lambda p, k, per: archive.exists(p.code, k, per, "pdf"),
                            produce, notify)
    sched.startService()
    assert sched.made == []  # the first check a minute after the start
    clock.advance(60)
    assert sched.made == [("p1", "daily", "2026-01-03")]  # yesterday's is due at 07:00
    clock.advance(3600)
    assert sched.made[-1] == ("p1", "daily", "2026-01-04")
    for _ in range(60):  # an hour more: nothing new
        clock.advance(60)
    assert len(sched.made) == 2
    assert pushed == [("p1", "daily 2026-01-03"), ("p1", "daily 2026-01-04")]
    assert [(r.kind, r.period) for r in archive.list("p1")] == [
        ("daily", "2026-01-04"), ("daily", "2026-01-03")]
    assert archive.read("p1", "daily", "2026-01-04", "pdf") == b"%PDF-2026-01-04"
    sched.stopService()


def test_a_failed_report_is_tried_again_at_the_next_check(tmp_path):
    clock = Clock()
    clock.advance(MON + 8 * 3600)
    attempts = []

    def produce(p, kind, period):
        attempts.append(period)
        if len(attempts) == 1:
            return defer.fail(RuntimeError("disk full"))
        return "ok"
    sched = ReportScheduler(clock, ReportSchedule(weekly=None, monthly=None), TZ,
                            lambda: [Project(1, "p1", "x"), Project(2, "empty", "y", 0)],
                            lambda p, k, per: len(attempts) > 1, produce)
    sched.startService()
    clock.advance(60)
    clock.advance(60)
    assert attempts == ["2026-01-04", "2026-01-04"] and sched.made == [
        ("p1", "daily", "2026-01-04")]
    sched.stopService()


def test_the_archive_refuses_paths_that_are_not_periods(tmp_path):
    a = ReportArchive(str(tmp_path))
    with pytest.raises(ValueError):
        a.path("p1", "daily", "../../etc", "pdf")
    with pytest.raises(ValueError):
        a.path("p1", "daily", "2026-01-01", "p/df")
    assert "/_2e2e2f78/" in a.path("../x", "daily", "2026-01-01", "pdf")


def test_push_text_goes_through_a_channel_once_per_recipient():
    from hub.alarmdesk.channels import push_text

    sent = []

    class Channel:
        def send(self, n):
            sent.append(n)
            return defer.succeed("ok")
    ds = push_text({"ops": Channel()}, "ops", ["a", "b"], "日报", "p1", "daily:2026-01-04")
    assert all(d.called for d in ds)
    assert [(n.recipient, n.text, n.alarm_id, n.project) for n in sent] == [
        ("a", "日报", 0, "p1"), ("b", "日报", 0, "p1")]
    assert sent[0].step == sent[1].step != 0
    missing = push_text({}, "sms", ["a"], "x")
    assert len(missing) == 1
    missing[0].addErrback(lambda f: f.trap(KeyError))


def test_hub_report_daily_and_weekly_on_the_cli(tmp_path, capsys):
    import yaml

    from hub.cli import main
    from hub.journal import Journal
    from hub.model import Reading

    (tmp_path / "var").mkdir()
    config = tmp_path / "hub.yaml"
    config.write_text(yaml.safe_dump({
        "hub": {"state_dir": "var"}, "transports": {"demo": {"type": "simulator"}},
        "devices": [{"id": "d1", "name": "一号箱", "project": "p1", "model": "simulated",
                     "transport": "demo", "address": "normal"}]}, allow_unicode=True),
        encoding="utf-8")
    j = Journal(str(tmp_path / "var" / "journal.sqlite"), clock=Clock())
    j.open()  # Monday and Tuesday, 1 kWh an hour
    j.append([Reading("d1", "active_energy", 10.0 + i, MON + i * 3600) for i in range(48)])
    j.flush()
    j.close()
    assert main(["rollups", "rebuild", "-c", str(config)]) == 0  # rollups by default
    out = tmp_path / "d.html"
    assert main(["report", "daily", "-c", str(config), "--project", "p1", "--period",
                 "2026-01-06", "--format", "html", "-o", str(out)]) == 0
    assert "0 alarms, 24.00 kWh" in capsys.readouterr().err
    assert "电气火灾监控日报" in out.read_text(encoding="utf-8")
    assert main(["report", "weekly", "-c", str(config), "--project", "p1", "--period",
                 "2026-W02", "--format", "xlsx", "-o", str(tmp_path / "w.xlsx")]) == 0
    assert "47.00 kWh" in capsys.readouterr().err
    assert main(["report", "weekly", "-c", str(config), "--project", "p1", "--period",
                 "2026-01"]) == 2


def test_nothing_that_ended_before_reports_were_first_scheduled():
    s = ReportSchedule()
    at = MON + 9 * 3600
    # yesterday and last week ended at MON, after the first start; December before it
    assert due(s, at, TZ, lambda k, p: False, not_before=MON - 3600) == [
        ("daily", "2026-01-04"), ("weekly", "2026-W01")]
    assert due(s, at, TZ, lambda k, p: False, not_before=MON + 3600) == []


def test_scheduled_since_is_kept(tmp_path):
    from hub.api.routes_reports import scheduled_since

    assert scheduled_since(str(tmp_path / "r"), 1000.0) == 1000.0
    assert scheduled_since(str(tmp_path / "r"), 5000.0) == 1000.0
