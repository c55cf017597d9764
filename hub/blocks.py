"""Compact readings for the ingest hot path: a message's readings as one object.

A device model that decodes many values per message (``json_map``: nine values in the
issue-15 payload) paid for a :class:`hub.model.Reading` per value, then the core checked
each, the alarm engine looked at each and the journal took each apart again into its row.
A :class:`ReadingBlock` carries the same readings as one device, one time, all of quality
GOOD, and a value per key of a :class:`BlockKeys` the model made once: the core checks the
keys once per key set and the values with one sum, the alarm engine sees them only when
the device has a set point or a condition, the journal makes its rows from the values.

A block is a ``Sequence`` of :class:`Reading`: whoever reads it as records (a transport of
an edge hub, a test, a third-party hub port) gets equal Readings, built on access. So a
model may hand one out wherever its records are expected; only the hub's own ingest path
and journal look inside.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

from hub.model import Quality, Reading

__all__ = ["BlockKeys", "ReadingBlock"]

_GOOD = Quality.GOOD


class BlockKeys:
    """The ``(quantity, channel)`` of each value of a block, in order; made once per model
    (and per set of points present) and shared by its blocks. Compared by identity: that
    is what lets the core and the journal cache what they worked out for it."""

    __slots__ = ("pairs", "quantities", "__weakref__")

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.pairs: tuple[tuple[str, str], ...] = tuple((q, c) for q, c in pairs)
        self.quantities = frozenset(q for q, _ in self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def __repr__(self) -> str:
        return f"BlockKeys({list(self.pairs)!r})"


class ReadingBlock(Sequence[Reading]):
    """Readings of ``device`` at ``ts``, quality GOOD: ``values[i]`` is the value of
    ``keys.pairs[i]`` (a float). The model that makes it promises nothing more; the core
    still checks keys, time and values before anything is journaled."""

    __slots__ = ("device", "ts", "keys", "values", "plain")

    def __init__(self, device: str, ts: float, keys: BlockKeys, values: list[float],
                 plain: bool = False) -> None:
        if len(values) != len(keys.pairs):
            raise ValueError(f"{len(values)} values for {len(keys.pairs)} keys")
        self.device = device
        self.ts = ts
        self.keys = keys
        self.values = values
        #: the maker checked that every value is a finite float (and changes none after):
        #: the core and the journal then skip their own per-value checks
        self.plain = plain

    def __len__(self) -> int:
        return len(self.values)

    def _reading(self, i: int) -> Reading:
        quantity, channel = self.keys.pairs[i]
        return Reading(self.device, quantity, self.values[i], self.ts, channel, _GOOD)

    @overload
    def __getitem__(self, i: int) -> Reading: ...

    @overload
    def __getitem__(self, i: slice) -> list[Reading]: ...

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self._reading(j) for j in range(*i.indices(len(self.values)))]
        n = len(self.values)
        if not -n <= i < n:
            raise IndexError("ReadingBlock index out of range")
        return self._reading(i % n)

    def __iter__(self) -> Iterator[Reading]:
        device, ts = self.device, self.ts
        for (quantity, channel), value in zip(self.keys.pairs, self.values, strict=True):
            yield Reading(device, quantity, value, ts, channel, _GOOD)

    def readings(self, quantities: frozenset[str] | None = None) -> list[Reading]:
        """The readings (of ``quantities`` only, if given) as :class:`Reading` objects."""
        if quantities is None:
            return list(self)
        device, ts = self.device, self.ts
        return [Reading(device, q, v, ts, c, _GOOD)
                for (q, c), v in zip(self.keys.pairs, self.values, strict=True)
                if q in quantities]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ReadingBlock):
            return (self.device, self.ts, self.keys.pairs, self.values) == (
                other.device, other.ts, other.keys.pairs, other.values)
        if isinstance(other, (list, tuple)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable values, like a list

    def __repr__(self) -> str:
        return f"ReadingBlock({self.device!r}, {self.ts!r}, {list(self)!r})"
