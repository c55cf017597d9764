"""Hazard transitions and attachment checks (sans-IO), and the statistics' arithmetic."""

from __future__ import annotations

import pytest

from hub.alarmdesk.hazards import IllegalTransition, check_transition, file_type
from hub.alarmdesk.stats import alarm_stats, hazard_stats, percentile


def test_transitions():
    for state, to in (("found", "rectifying"), ("rectifying", "checked"),
                      ("checked", "closed"), ("checked", "rectifying"),
                      ("rectifying", "found")):
        check_transition(state, to)
    with pytest.raises(IllegalTransition) as e:
        check_transition("found", "closed")
    assert e.value.allowed == ("rectifying",)
    with pytest.raises(IllegalTransition) as e:
        check_transition("closed", "found")
    assert e.value.allowed == () and "none (closed)" in str(e.value)


def test_file_types_by_content():
    assert file_type("image/png", b"\x89PNG\r\n\x1a\nxxxx") == "png"
    assert file_type("image/jpeg; charset=x", b"\xff\xd8\xff\xe0") == "jpg"
    assert file_type("application/pdf", b"%PDF-1.7") == "pdf"
    assert file_type("image/png", b"\xff\xd8\xff\xe0") is None
    assert file_type("text/html", b"<html>") is None


def test_percentiles_nearest_rank():
    assert percentile([], 50) is None
    assert percentile([5.0], 90) == 5.0
    values = [float(v) for v in range(1, 11)]
    assert (percentile(values, 50), percentile(values, 90)) == (5.0, 9.0)


def test_alarm_and_hazard_stats(make_store):
    rows = [("alarm", "alarm", 1, 0, 100.0, 130.0, 200.0, "temperature"),
            ("alarm", "pre-alarm", 1, 1, 100.0, 110.0, None, "temperature"),
            ("fault", "fault", 0, 1, 100.0, None, None, "offline")]
    s = alarm_stats(rows)
    assert s["by_kind"] == {"alarm": 2, "fault": 1}
    assert s["by_state"] == {"cleared-acknowledged": 1, "active-acknowledged": 1,
                             "active-unacknowledged": 1}
    assert s["time_to_acknowledge"] == {"count": 2, "median": 10.0, "p90": 30.0}
    assert s["time_to_close"] == {"count": 1, "median": 100.0, "p90": 100.0}
    store = make_store()
    a = store.hazard_add("p1", "d1", None, "线路", "一般", "x", 50.0, "", "op", 10.0)
    b = store.hazard_add("p1", "d1", None, "线路", "重大", "y", None, "", "op", 10.0)
    for to in ("rectifying", "checked", "closed"):
        store.hazard_move(b.id, to, "op", 70.0)
    h = hazard_stats(store.hazards(), now=100.0)
    assert (h["overdue"], h["overdue_ids"], h["by_state"]) == (1, [a.id],
                                                               {"found": 1, "closed": 1})
    assert h["time_to_close"]["median"] == 60.0
    with pytest.raises(IllegalTransition):
        store.hazard_move(b.id, "found", "op", 80.0)
    assert len(store.hazard_history(b.id)) == 4
