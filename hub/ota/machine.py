"""One device's firmware update, as LwM2M object 5 asks, without I/O.

The machine issues :class:`Step` requests (a read, a write, the block-wise push, the
Execute) through ``issue`` and learns their outcome from :meth:`DeviceUpdate.step_done`; it
learns the device's own firmware state from :meth:`DeviceUpdate.reported` (notifications of
/5/0/3 State and /5/0/5 Update Result, or the answers of a poll). Time comes from an
``IReactorTime`` (``task.Clock`` in tests). The driver that performs the steps is the
transport's (``plugins/transports/coap_lwm2m/ota.py``); queue mode is its business: a step
waits there for the device to wake, within the time to live the machine gives it.

Phases, each with its own deadline (:class:`Limits`) and a bounded number of sends::

    checking     read /3/0/3: already the target version → succeeded (nothing flashed)
    resetting    write "" to /5/0/1 (pull) or an empty /5/0/0 (push): State Idle, Result 0
    delivering   pull: write the Package URI /5/0/1; push: Block1 write of /5/0/0
    downloading  wait for State 2 (Downloaded); a silent device is polled
    updating     Execute /5/0/2 (sent once per delivery), wait for Result 1
    verifying    read /3/0/3 and compare it exactly with the target
    succeeded | failed (the device's result code, or why) | timed_out | cancelled

Never an endless loop: a step is sent at most ``tries`` times in its phase, a delivery
(resetting → downloading) is tried at most ``attempts`` times, each retry starts with the
reset of the device's failure state, and the Execute that flashes the image is never sent
again after the device may have acted on it: a silent updating phase goes to verifying,
which reads the version the device runs rather than flashing it a second time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from twisted.internet.interfaces import IReactorTime

from hub.ota.version import same

__all__ = ["FINAL", "RESULTS", "RETRYABLE", "DeviceUpdate", "Limits", "Phase", "Step",
           "StepKind"]


class Phase(StrEnum):
    QUEUED = "queued"
    CHECKING = "checking"
    RESETTING = "resetting"
    DELIVERING = "delivering"
    DOWNLOADING = "downloading"
    UPDATING = "updating"
    VERIFYING = "verifying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


FINAL = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.TIMED_OUT, Phase.CANCELLED})

#: /5/0/5 Update Result. 0-9 are LwM2M 1.0's and 1.1's; 10 and 11 came with object 5
#: version 1.1 (LwM2M 1.2) and are understood when a device sends them.
RESULTS: dict[int, str] = {
    0: "initial value",
    1: "firmware updated successfully",
    2: "not enough flash memory for the new package",
    3: "out of RAM during the download",
    4: "connection lost during the download",
    5: "integrity check failure of the new package",
    6: "unsupported package type",
    7: "invalid URI",
    8: "firmware update failed",
    9: "unsupported protocol",
    10: "firmware update cancelled",
    11: "firmware update deferred",
}
#: results a new delivery may cure (the link, not the image or the device, failed)
RETRYABLE = frozenset({4})
#: /5/0/3 State
IDLE, DOWNLOADING, DOWNLOADED, UPDATING = 0, 1, 2, 3

StepKind = Literal["read_version", "reset", "write_uri", "push", "read_status", "execute"]
Outcome = Literal["ok", "failed", "timed_out"]


@dataclass(frozen=True)
class Limits:
    """Seconds each phase may take, and how often things are tried. A phase's deadline
    bounds the time to live of its steps: in queue mode they wait for the device's next
    wake-up, which may be hours away."""

    check: float = 6 * 3600.0
    reset: float = 6 * 3600.0
    deliver: float = 24 * 3600.0  # the URI write, or the whole push
    download: float = 24 * 3600.0  # then until State 2 (Downloaded)
    update: float = 6 * 3600.0  # from the Execute until Result 1
    verify: float = 6 * 3600.0
    poll_after: float = 3600.0  # a waiting phase reads /5/0/3 and /5/0/5 after this silence
    tries: int = 3  # sends of one step within its phase
    attempts: int = 3  # deliveries before the device fails (each after a reset)

    def __post_init__(self) -> None:
        if min(self.check, self.reset, self.deliver, self.download, self.update, self.verify,
               self.poll_after) <= 0 or self.tries < 1 or self.attempts < 1:
            raise ValueError("every limit must be positive")


@dataclass(frozen=True)
class Step:
    """A request for the driver. ``ttl``: how long it may wait for the device."""

    id: int
    kind: StepKind
    ttl: float
    value: Any = None  # the URI of write_uri


@dataclass
class DeviceUpdate:
    """The firmware update of one device to ``target``.

    ``issue(step)`` hands a step to the driver; ``changed(update, before, detail)`` is told
    of every phase change (the manager records it as the device's history).
    """

    device: str
    target: str
    method: Literal["pull", "push"]
    clock: IReactorTime
    issue: Callable[[Step], None]
    changed: Callable[[DeviceUpdate, Phase, str], None]
    uri: str = ""
    limits: Limits = field(default_factory=Limits)
    scheme: str = "auto"
    attempt: int = 0  # deliveries started so far (kept over a restart of the hub)
    phase: Phase = Phase.QUEUED
    result_code: int | None = None  # the device's /5/0/5 at the end, when it said one
    detail: str = ""
    version: str | None = None  # what /3/0/3 last said
    flashed: bool = False  # the Execute was sent: it may have flashed the device
    _step: Step | None = None
    _sends: int = 0
    _next_id: int = 0
    _deadline: Any = None
    _poll: Any = None
    _refusal: str = ""

    # -- inputs ----------------------------------------------------------------------------

    def start(self) -> None:
        if self.phase is not Phase.QUEUED:
            raise RuntimeError(f"{self.device}: already {self.phase}")
        if self.method == "pull" and not self.uri:
            raise ValueError("a pull update needs the package URI")
        self._enter(Phase.CHECKING, self.limits.check, "reading the firmware version")
        self._send("read_version")

    @property
    def final(self) -> bool:
        return self.phase in FINAL

    def step_done(self, step_id: int, outcome: Outcome, value: Any = None,
                  detail: str = "") -> None:
        """The driver's answer to step ``step_id``: ``ok`` (``value`` what a read gave),
        ``failed`` (the device refused: ``detail`` says how) or ``timed_out`` (no answer
        within the step's time to live). A stale step's answer is ignored."""
        step = self._step
        if step is None or step.id != step_id or self.final:
            return
        self._step = None
        if outcome == "ok":
            self._ok(step, value)
        elif outcome == "failed":
            self._refused(step, detail)
        else:
            self._silent(step, detail)

    def reported(self, state: int | None = None, result: int | None = None) -> None:
        """/5/0/3 State and/or /5/0/5 Update Result, from a notification or a poll."""
        if self.final:
            return
        ph = self.phase
        if result is not None and result not in (0, 1) and ph in (
                Phase.DELIVERING, Phase.DOWNLOADING, Phase.UPDATING):
            self._device_failed(result)
            return
        if ph in (Phase.DELIVERING, Phase.DOWNLOADING) and state == DOWNLOADED:
            self._downloaded()
        elif ph is Phase.UPDATING and result == 1:
            self._verify("the device reports success")
        elif ph is Phase.DOWNLOADING and state is not None:
            self._rearm_poll()  # news: the download is alive

    def cancel(self, detail: str = "cancelled") -> None:
        """End now as cancelled. Before the Execute the device's state is reset (best
        effort, not awaited); after it the device may still finish, which the detail says."""
        if self.final:
            return
        if self.flashed:
            detail += "; the update was already started and may still complete"
        elif self.phase in (Phase.DELIVERING, Phase.DOWNLOADING):
            self._next_id += 1
            self.issue(Step(self._next_id, "reset", self.limits.reset))
        self._step = None
        self._finish(Phase.CANCELLED, detail)

    # -- the phases ------------------------------------------------------------------------

    def _ok(self, step: Step, value: Any) -> None:
        kind = step.kind
        if kind == "read_version":
            self.version = None if value is None else str(value)
            if self.phase is Phase.CHECKING:
                if same(self.version, self.target, self.scheme):
                    self._finish(Phase.SUCCEEDED, f"already runs {self.target}")
                    return
                self._deliver_again(f"runs {self.version}")
            elif self.phase is Phase.VERIFYING:
                if same(self.version, self.target, self.scheme):
                    self._finish(Phase.SUCCEEDED, f"runs {self.target}")
                else:
                    self._finish(Phase.FAILED, f"runs {self.version} after the update, not "
                                 f"{self.target}")
        elif kind == "reset":
            self._enter(Phase.DELIVERING, self.limits.deliver,
                        "writing the package URI" if self.method == "pull" else
                        "writing the package block-wise")
            if self.method == "pull":
                self._send("write_uri", self.uri)
            else:
                self._send("push")
        elif kind in ("write_uri", "push"):
            if self.phase is Phase.DELIVERING:
                self._enter(Phase.DOWNLOADING, self.limits.download,
                            "the device downloads" if kind == "write_uri"
                            else "the device checks the package")
                self._rearm_poll()
        elif kind == "read_status":
            state, result = value if isinstance(value, tuple) else (None, None)
            if self.phase is Phase.DELIVERING:  # after a refused URI write
                if state == DOWNLOADING and not result:
                    self._enter(Phase.DOWNLOADING, self.limits.download,
                                "the device downloads (the URI write was a repeat)")
                    self._rearm_poll()
                elif state != DOWNLOADED:
                    self._finish(Phase.FAILED, self._refusal)
                    return
            self.reported(state, result)
            if self.phase in (Phase.DOWNLOADING, Phase.UPDATING) and self._step is None:
                self._rearm_poll()
        elif kind == "execute":
            self._rearm_poll()  # the device flashes and reboots; its Result tells

    def _refused(self, step: Step, detail: str) -> None:
        if step.kind == "write_uri" and self.phase is Phase.DELIVERING:
            # a write sent again after its answer was lost finds the download under way,
            # and a device may refuse it for that: its State tells
            self._refusal = f"{step.kind}: {detail}"
            self._send("read_status")
            return
        if step.kind == "read_status" and self.phase is Phase.DELIVERING:
            self._finish(Phase.FAILED, self._refusal)
            return
        if step.kind == "read_status" or (step.kind == "execute" and self.flashed
                                          and self.phase is Phase.UPDATING):
            self._rearm_poll()
            return
        self._finish(Phase.FAILED, f"{step.kind}: {detail}")

    def _silent(self, step: Step, detail: str) -> None:
        if step.kind == "execute" or step.kind == "read_status":
            # an Execute is never sent twice: the device may have acted on it; the wait
            # and the deadline of the phase go on
            self._rearm_poll()
            return
        if self._sends < self.limits.tries:
            self._send(step.kind, step.value)
            return
        if step.kind == "push":
            self._retry(f"the push got no answer ({detail or 'timed out'})")
            return
        self._finish(Phase.TIMED_OUT, f"{step.kind}: no answer to {self._sends} sends")

    def _downloaded(self) -> None:
        self._enter(Phase.UPDATING, self.limits.update, "downloaded; executing the update")
        self.flashed = True
        self._send("execute")

    def _verify(self, why: str) -> None:
        self._enter(Phase.VERIFYING, self.limits.verify, why)
        self._send("read_version")

    def _device_failed(self, result: int) -> None:
        text = RESULTS.get(result, f"result code {result}")
        if self.phase is not Phase.UPDATING and result in RETRYABLE:
            self._retry(f"the device reports {result} ({text})", result)
            return
        self.result_code = result
        self._finish(Phase.FAILED, f"the device reports {result} ({text})")

    def _retry(self, why: str, result: int | None = None) -> None:
        if self.attempt >= self.limits.attempts:
            self.result_code = result
            self._finish(Phase.FAILED if result is not None else Phase.TIMED_OUT,
                         f"{why}; {self.attempt} deliveries tried")
            return
        self._deliver_again(why)

    def _deliver_again(self, why: str) -> None:
        self.attempt += 1
        self._enter(Phase.RESETTING, self.limits.reset,
                    f"{why}; delivery {self.attempt} of {self.limits.attempts}: resetting the "
                    "device's firmware state")
        self._send("reset")

    def _on_deadline(self) -> None:
        self._deadline = None
        if self.final:
            return
        ph = self.phase
        self._step = None
        if ph is Phase.DOWNLOADING or (ph is Phase.DELIVERING and self.method == "push"):
            self._retry(f"not downloaded within {self._limit(ph):g} s")
        elif ph is Phase.UPDATING:
            # silent after the Execute: what it runs now decides, never a second flash
            self._verify(f"no result within {self.limits.update:g} s of the Execute")
        else:
            self._finish(Phase.TIMED_OUT, f"{ph} took longer than {self._limit(ph):g} s")

    def _on_poll(self) -> None:
        self._poll = None
        if self.phase in (Phase.DOWNLOADING, Phase.UPDATING) and self._step is None:
            self._send("read_status")

    # -- bookkeeping -----------------------------------------------------------------------

    def _limit(self, phase: Phase) -> float:
        lim = self.limits
        return {Phase.CHECKING: lim.check, Phase.RESETTING: lim.reset,
                Phase.DELIVERING: lim.deliver, Phase.DOWNLOADING: lim.download,
                Phase.UPDATING: lim.update, Phase.VERIFYING: lim.verify}.get(phase, 0.0)

    def _enter(self, phase: Phase, limit: float, detail: str) -> None:
        before = self.phase
        self._cancel_timers()
        self.phase, self.detail, self._sends = phase, detail, 0
        self._deadline = self.clock.callLater(limit, self._on_deadline)
        self.changed(self, before, detail)

    def _send(self, kind: StepKind, value: Any = None) -> None:
        self._sends += 1
        self._next_id += 1
        left = self._deadline.getTime() - self.clock.seconds() if self._deadline else 1.0
        self._step = Step(self._next_id, kind, max(left, 1.0), value)
        self.issue(self._step)

    def _rearm_poll(self) -> None:
        if self._poll is not None and self._poll.active():
            self._poll.cancel()
        self._poll = self.clock.callLater(self.limits.poll_after, self._on_poll)

    def _cancel_timers(self) -> None:
        for call in (self._deadline, self._poll):
            if call is not None and call.active():
                call.cancel()
        self._deadline = self._poll = None

    def _finish(self, phase: Phase, detail: str) -> None:
        before = self.phase
        self._cancel_timers()
        self._step = None
        self.phase, self.detail = phase, detail
        self.changed(self, before, detail)
