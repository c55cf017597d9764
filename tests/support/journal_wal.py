"""Filling a journal's WAL until its first background checkpoint (tests of checkpoints)."""

from __future__ import annotations

from twisted.internet import defer

from hub.model import Reading


def checkpoint_inline(journal) -> list:
    """Give ``journal`` a checkpoint runner that runs at once, as the worker thread would;
    returns the list the checkpoints' results go to."""
    ran: list = []

    def runner(fn):
        ran.append(fn())
        return defer.succeed(ran[-1])

    journal.checkpoint_in_threads(runner)
    return ran


def fill_until_checkpoint(journal, ran: list) -> float:
    """Commit 200-reading appends until the first checkpoint ran; return the last value."""
    value = 0.0
    while not ran:
        value += 1
        journal.append([Reading(f"d{int(value) % 50}", "voltage", value, value, "A")
                        for _ in range(200)])
        journal.flush()
        assert value < 20_000, "no checkpoint ran"
    return value
