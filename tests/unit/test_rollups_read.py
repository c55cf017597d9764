"""JournalQueries.stored_readings, the fold process's read: from any seq (a commit's end
or inside one) and with any limit, the readings past it up to the highest seq returned,
each once, none missing, at most ``limit``, whatever the order."""

from __future__ import annotations

import random

from hub.model import Event, EventKind, EventState, Level, Reading
from hub.testing import SinkHarness

T = 1_767_196_800.0


def test_stored_readings_are_every_reading_up_to_the_highest_returned(tmp_path):
    rng = random.Random(5)
    h = SinkHarness(str(tmp_path / "var"))
    try:
        for c in range(40):  # commits of several devices' readings, events between
            records = []
            for _ in range(rng.randint(1, 30)):
                d = rng.randrange(5)
                records.append(Reading(f"d{d}", "temperature", rng.uniform(0, 50),
                                       T + c * 60 + rng.random(), "T1"))
                if rng.random() < 0.1:
                    records.append(Event(f"d{d}", EventKind.ALARM, "temperature",
                                         EventState.RAISED, T + c * 60, Level.ALARM, "T1"))
            h.feed(records)
        want = [list(r) for r in h.journal.read_rows(0, -1, {"reading"})]
        last = want[-1][0]
        for _ in range(200):
            after = rng.randint(0, last)
            limit = rng.choice((1, 3, 10, 50, 400))
            rows, more = h.journal.stored_readings(after, limit)
            past = [r for r in want if r[0] > after]
            if not rows:
                assert not past and not more
                continue
            top = max(r[0] for r in rows)
            assert sorted(rows) == [r for r in past if r[0] <= top]
            assert len(rows) <= limit
            assert more == (top < past[-1][0])
    finally:
        h.close()
