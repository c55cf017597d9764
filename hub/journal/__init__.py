"""The journal: the one durable store between ingest and the sinks (SQLite in WAL mode).

* :mod:`.schema`: the tables, the record-kind codes, the errors;
* :mod:`.segments`: a commit's readings of one device encoded into one row; the upgrade
  of schema 1 journals;
* :mod:`.codecs`: records to and from the JSON of the ``data`` column;
* :mod:`.reader`: :class:`JournalQueries`, the queries (also on a read-only connection);
* :mod:`.writer`: :class:`Journal`, group commit, cursors, commit notification, retention;
* :mod:`.committer`: commits in a thread of their own (``hub run``);
* :mod:`.recent`: the last commits' rows in memory, for sinks that keep up;
* :mod:`.latest`: the newest reading per series, in memory, saved every 16 commits.

Import everything from here: ``from hub.journal import Journal, KINDS, ...``.
"""

from hub.journal.codecs import (
    ack_from_dict,
    ack_to_dict,
    command_from_dict,
    command_to_dict,
    delivery_from_dict,
    delivery_to_dict,
    dumps,
    result_from_dict,
    result_to_dict,
)
from hub.journal.cursors import CursorError
from hub.journal.reader import JournalQueries
from hub.journal.retention import PRUNE_CHUNK, SIZE_CHECK_COMMITS, SIZE_CHECK_SECONDS
from hub.journal.schema import (
    KINDS,
    SCHEMA,
    SCHEMA_VERSION,
    JournalClosedError,
    JournalError,
    JournalReadOnlyError,
)
from hub.journal.writer import CACHE_KIB, MARK_EVERY, WAL_AUTOCHECKPOINT, Journal

__all__ = [
    "CACHE_KIB",
    "KINDS",
    "MARK_EVERY",
    "CursorError",
    "PRUNE_CHUNK",
    "SCHEMA",
    "SCHEMA_VERSION",
    "SIZE_CHECK_COMMITS",
    "SIZE_CHECK_SECONDS",
    "WAL_AUTOCHECKPOINT",
    "Journal",
    "JournalClosedError",
    "JournalError",
    "JournalQueries",
    "JournalReadOnlyError",
    "ack_from_dict",
    "ack_to_dict",
    "command_from_dict",
    "command_to_dict",
    "delivery_from_dict",
    "delivery_to_dict",
    "dumps",
    "result_from_dict",
    "result_to_dict",
]
