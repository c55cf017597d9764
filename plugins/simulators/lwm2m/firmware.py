"""LwM2M object 5 (Firmware Update) of a simulated detector: pure code, no sockets, no
clock. The endpoint (``endpoint.py``) moves the bytes and the time.

What the device does, as LwM2M 1.0/1.1 describe it: a Package URI written (pull) or the
package written block-wise to /5/0/0 (push) starts a download (State 1); a complete,
intact package leaves it Downloaded (State 2); Execute /5/0/2 updates (State 3) and ends in
State 0 with Update Result 1 and the new version in /3/0/3. Writing an empty URI or an empty
package resets it to State 0, Result 0. A package that fails its check ends in State 0 with
Result 5 (integrity check failure), one of another type with 6.

Simulator images (:func:`make_image`) start with ``SIMFW1 <version> <sha256 of the rest>``
and a newline, so the device knows the version it will run and checks the bytes it got.
:class:`Behaviour` makes a device misbehave on purpose: sleep after so many blocks (once),
then resume; or refuse every package with a given result code.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

__all__ = ["Behaviour", "FirmwareObject", "StateError", "make_image", "plan_behaviours"]

MAGIC = b"SIMFW1 "
IDLE, DOWNLOADING, DOWNLOADED, UPDATING = 0, 1, 2, 3


def make_image(version: str, size: int = 4096, seed: bytes = b"") -> bytes:
    """A simulator image of about ``size`` bytes for ``version``."""
    body = bytearray()
    block = hashlib.sha256(seed + version.encode()).digest()
    while len(body) < max(size - 90, 1):
        body += block
        block = hashlib.sha256(block).digest()
    body = bytes(body[:max(size - 90, 1)])
    return MAGIC + f"{version} {hashlib.sha256(body).hexdigest()}\n".encode() + body


@dataclass(frozen=True)
class Behaviour:
    """``drop_after``: blocks received before the device sleeps mid-transfer (once), for
    ``sleep_for`` s; ``reject``: the result code it reports instead of accepting a
    package."""

    drop_after: int | None = None
    sleep_for: float = 5.0
    reject: int | None = None


def plan_behaviours(count: int, drop_rate: float = 0.0, reject_rate: float = 0.0,
                    reject_code: int = 5, drop_after: int = 2,
                    sleep_for: float = 5.0) -> list[Behaviour]:
    """Behaviours of ``count`` devices, spread evenly (deterministic, so a test knows who
    does what): ``round(count × reject_rate)`` reject, ``round(count × drop_rate)`` of the
    others drop mid-transfer."""
    n_reject = round(count * reject_rate)
    n_drop = round(count * drop_rate)
    rejecting = {min(count - 1, int((k + 0.5) * count / n_reject)) for k in range(n_reject)}
    others = [i for i in range(count) if i not in rejecting]
    dropping = {others[min(len(others) - 1, int((k + 0.25) * len(others) / n_drop))]
                for k in range(n_drop)} if n_drop and others else set()
    return [Behaviour(reject=reject_code) if i in rejecting else
            Behaviour(drop_after=drop_after, sleep_for=sleep_for) if i in dropping else
            Behaviour() for i in range(count)]


@dataclass
class FirmwareObject:
    """/5/0 and the version in /3/0/3."""

    version: str = "1.0.0"
    behaviour: Behaviour = field(default_factory=Behaviour)
    state: int = IDLE
    result: int = 0
    uri: str = ""
    package: bytearray = field(default_factory=bytearray)
    pending_version: str = ""
    blocks: int = 0  # blocks of the current download received
    dropped: bool = False  # the one drop of its behaviour happened
    flashes: list[str] = field(default_factory=list)  # versions it updated to, in order
    downloads: int = 0  # downloads started

    def values(self) -> dict[tuple[int, int, int], object]:
        return {(5, 0, 1): self.uri, (5, 0, 3): self.state, (5, 0, 5): self.result,
                (5, 0, 6): "efd-firmware", (5, 0, 7): self.pending_version,
                (5, 0, 9): 2}

    # -- the server's requests --------------------------------------------------------------

    def reset(self) -> None:
        self.state, self.result, self.uri = IDLE, 0, ""
        self.package = bytearray()
        self.blocks = 0

    def write_uri(self, uri: str) -> bool:
        """Whether the device now fetches ``uri`` (an empty one resets)."""
        if not uri:
            self.reset()
            return False
        if self.state == DOWNLOADING and uri == self.uri:
            return False  # the same write again (its answer was lost): nothing new
        if self.state != IDLE:
            raise StateError(f"a download is under way (state {self.state})")
        self.uri = uri
        self._begin()
        if not uri.startswith(("coap://", "coaps://")):
            self._fail(9 if "://" in uri else 7)  # unsupported protocol / invalid URI
            return False
        return True

    def push_block(self, num: int, more: bool, data: bytes) -> None:
        """One Block1 block of /5/0/0 (block 0 starts a download; a repeated block is
        taken again, as a retransmission; a gap is refused)."""
        if num == 0:
            if not data and not more:
                self.reset()
                return
            if self.state in (DOWNLOADED, UPDATING):
                raise StateError(f"state {self.state}: reset the package first")
            self._begin()
        elif self.state != DOWNLOADING:
            raise StateError("no push under way")
        if num < self.blocks:
            return  # a block already taken (its answer was lost)
        if num != self.blocks:
            raise StateError(f"block {num} after {self.blocks} blocks")
        self.add_block(data, more)

    def add_block(self, data: bytes, more: bool) -> None:
        """A block of the package, fetched (pull) or written (push)."""
        self.package += data
        self.blocks += 1
        if not more:
            self._check()

    def should_drop(self) -> bool:
        """Whether the device goes to sleep now, mid-transfer (once)."""
        b = self.behaviour
        if b.drop_after is not None and not self.dropped and self.blocks >= b.drop_after \
                and self.state == DOWNLOADING:
            self.dropped = True
            return True
        return False

    def download_failed(self) -> None:
        self._fail(4)  # connection lost during the download

    def execute(self) -> None:
        if self.state != DOWNLOADED:
            raise StateError(f"nothing downloaded to update to (state {self.state})")
        self.state = UPDATING

    def finish_update(self) -> None:
        if self.state != UPDATING:
            return
        self.version = self.pending_version
        self.flashes.append(self.version)
        self.state, self.result = IDLE, 1
        self.package = bytearray()

    # -- internals ----------------------------------------------------------------------------

    def _begin(self) -> None:
        self.state, self.result = DOWNLOADING, 0
        self.package = bytearray()
        self.blocks = 0
        self.downloads += 1

    def _fail(self, code: int) -> None:
        self.state, self.result = IDLE, code
        self.package = bytearray()

    def _check(self) -> None:
        if self.behaviour.reject is not None:
            self._fail(self.behaviour.reject)
            return
        data = bytes(self.package)
        head, _, body = data.partition(b"\n")
        if not head.startswith(MAGIC):
            self._fail(6)  # unsupported package type
            return
        parts = head[len(MAGIC):].decode("ascii", "replace").split(" ")
        if len(parts) != 2 or hashlib.sha256(body).hexdigest() != parts[1]:
            self._fail(5)  # integrity check failure
            return
        self.pending_version = parts[0]
        self.state = DOWNLOADED


class StateError(Exception):
    """An operation the firmware object refuses in its state (the endpoint answers 4.05)."""
