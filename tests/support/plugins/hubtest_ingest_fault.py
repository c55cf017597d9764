"""A test distribution that makes the hub's ingest fail once, the way a full disk or a
locked database would: ``HUBTEST_INGEST_FAULT=commit`` fails the first journal append that
carries readings (its Deferred errs, as a failed commit does), ``raise`` makes the first
``ingest_many`` call raise instead of returning a Deferred."""

from __future__ import annotations

import os

from twisted.internet import defer

from hub import hookimpl


@hookimpl
def hub_startup(hub):
    mode = os.environ.get("HUBTEST_INGEST_FAULT")
    if mode == "commit":
        append = hub.journal.append

        def failing_append(records):
            records = list(records)
            if any(type(r).__name__ == "Reading" for r in records):
                del hub.journal.append  # once: the class's method again from now on
                return defer.fail(OSError(28, "injected: no space left on device"))
            return append(records)

        hub.journal.append = failing_append
    elif mode == "raise":
        def failing_ingest_many(batch, received_at=None):
            del hub.ingest_many
            raise RuntimeError("injected: ingest_many raised")

        hub.ingest_many = failing_ingest_many
