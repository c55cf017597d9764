"""Poll planning: the fewest read requests that cover every point and status word.

Over a 4G DTU every request costs a round trip of hundreds of milliseconds to seconds and
the bus carries one request at a time, so reads of neighbouring registers are merged.
A merged read may span up to ``max_gap`` unused registers (some devices answer a read of
an unmapped register with exception 02, hence the default of 0 in maps) and never more
than the protocol allows in one request (125 registers, 2000 bits) or the map's lower
limits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from plugins.protocols.modbus.rtu import BIT_READS

__all__ = ["Poll", "plan_polls"]


@dataclass(frozen=True, slots=True, order=True)
class Poll:
    """One read request: ``count`` registers (or bits, for functions 01/02) of
    ``function`` from ``address``. Ordered by function, then address."""

    function: int
    address: int
    count: int

    @property
    def end(self) -> int:
        """The first address after the read."""
        return self.address + self.count

    def covers(self, function: int, address: int, count: int) -> bool:
        return function == self.function and self.address <= address and \
            address + count <= self.end

    def __str__(self) -> str:
        return f"fc{self.function:02d} {self.address}..{self.end - 1}"


def plan_polls(spans: Iterable[tuple[int, int, int]], max_gap: int = 0,
               max_registers: int = 125, max_bits: int = 2000) -> list[Poll]:
    """Merge ``(function, address, count)`` spans into polls, in a deterministic order.

    Left to right per function, a span joins the current poll when it starts at most
    ``max_gap`` past the poll's end and the poll stays within the limit; otherwise it
    starts a new poll. Overlapping spans (two points in one register) share a poll.
    """
    polls: list[Poll] = []
    current: list[int] | None = None  # [function, start, end]
    for function, address, count in sorted(set(spans)):
        limit = max_bits if function in BIT_READS else max_registers
        end = address + count
        if (current is not None and function == current[0]
                and address <= current[2] + max_gap and max(end, current[2]) - current[1] <= limit):
            current[2] = max(end, current[2])
            continue
        if current is not None:
            polls.append(Poll(current[0], current[1], current[2] - current[1]))
        current = [function, address, end]
    if current is not None:
        polls.append(Poll(current[0], current[1], current[2] - current[1]))
    return polls
