"""The AT dialogue with a GSM modem, sans-IO: bytes in, bytes out, events, no clock.

The glue (:mod:`plugins.sinks.sms_modem.modem`) writes :meth:`AtSession.data_to_send`,
feeds what the port read to :meth:`AtSession.receive_data`, arms a timer for
:attr:`AtSession.timeout` seconds whenever it changes and calls :meth:`AtSession.timed_out`
when it fires, and takes :class:`Ready`, :class:`Submitted` and :class:`Failed` events from
:meth:`AtSession.next_event`.

Dialogue (3GPP TS 27.007, TS 27.005):

* initialise: ESC + ``AT`` (leaves a ``> `` prompt a previous session may have left open; any
  final result will do), ``ATE0`` (echo off), ``AT+CMEE=1`` (numeric ``+CME ERROR``),
  ``AT+CPIN?`` and ``AT+CPIN="…"`` when the SIM asks for its PIN, ``AT+CMGF=0`` (PDU mode);
* per part: ``AT+CMGS=<tpdu length>``, wait for ``> ``, send the PDU hex and Ctrl-Z, wait
  for ``+CMGS: <mr>`` and ``OK``, or ``+CMS ERROR: <n>`` / ``+CME ERROR: <n>`` / ``ERROR``.

Lines that are neither the expected information response nor a final result code are
unsolicited result codes (``RING``, ``+CMTI: "SM",3``, ``^RSSI: 17``, ``+CREG: 1``, …) and
are dropped. Echoed command lines are dropped too, so a modem that ignores ``ATE0`` works.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from plugins.sinks.sms_modem.pdu import Part

CTRL_Z = b"\x1a"
ESC = b"\x1b"
#: A modem that never ends a line must not grow the buffer without bound.
MAX_LINE = 4096


# ---------------------------------------------------------------------------- errors

# +CMS ERROR values (TS 27.005 §3.2.5) a retry of the same message cannot mend. 0..127 are
# RP-causes (TS 24.011 annex E.2), 128..255 TP-FCS values (TS 23.040 §9.2.3.22), 300..
# are the ME/TA errors of TS 27.005 itself. Everything else (network out of order,
# congestion, SIM busy, no network service, memory full, unknown errors) is transient: the
# sink retries with backoff. Errors an operator must fix on the modem side (SIM missing, PIN,
# SMSC unknown) are transient too, so messages wait instead of being dropped. Names as in
# the specs (lists: https://nowsms.com/gsm-modem-cms-error-code-list, and the GSM 04.11
# annex E-2 table in modem manuals, e.g. Multi-Tech S000293I appendix A).
PERMANENT_CMS = {
    1: "unassigned (unallocated) number",
    8: "operator determined barring",
    10: "call barred",
    21: "short message transfer rejected",
    28: "unidentified subscriber",
    29: "facility rejected",
    30: "unknown subscriber",
    50: "requested facility not subscribed",
    69: "requested facility not implemented",
    95: "semantically incorrect message",
    96: "invalid mandatory information",
    97: "message type non-existent or not implemented",
    98: "message not compatible with short message protocol state",
    99: "information element non-existent or not implemented",
    0xC1: "no SC subscription",
    0xC3: "invalid SME address",
    0xC4: "destination SME barred",
    0xC5: "SM rejected-duplicate SM",
    0xC6: "TP-VPF not supported",
    0xC7: "TP-VP not supported",
    303: "operation not supported",
    304: "invalid PDU mode parameter",
    305: "invalid text mode parameter",
}
TRANSIENT_CMS = {
    17: "network failure",
    27: "destination out of service",
    38: "network out of order",
    41: "temporary failure",
    42: "congestion",
    47: "resources unavailable, unspecified",
    0xC0: "SC busy",
    0xC2: "SC system failure",
    300: "ME failure",
    301: "SMS service of ME reserved",
    302: "operation not allowed",
    310: "SIM not inserted",
    311: "SIM PIN required",
    313: "SIM failure",
    314: "SIM busy",
    315: "SIM wrong",
    316: "SIM PUK required",
    320: "memory failure",
    322: "memory full",
    330: "SMSC address unknown",
    331: "no network service",
    332: "network timeout",
    500: "unknown error",
}


def cms_is_permanent(code: int) -> bool:
    # TS 23.040 §9.2.3.22: 0x80..0x8F are TP-PID errors, 0x90..0x9F TP-DCS errors (the
    # message itself is wrong); explicitly listed codes above; the rest is transient.
    return code in PERMANENT_CMS or 0x80 <= code <= 0x9F


@dataclass(frozen=True)
class ModemError:
    """Why a command failed. ``kind``: ``cms``, ``cme``, ``error`` (plain ERROR),
    ``timeout``, ``pin`` (the SIM wants a PIN or PUK we cannot give), ``protocol``."""

    kind: str
    code: int | None = None
    permanent: bool = False
    detail: str = ""

    def __str__(self) -> str:
        if self.kind == "cms":
            name = PERMANENT_CMS.get(self.code) or TRANSIENT_CMS.get(self.code, "")
            return f"+CMS ERROR: {self.code}" + (f" ({name})" if name else "")
        if self.kind == "cme":
            return f"+CME ERROR: {self.code}"
        return self.detail or self.kind


def classify(line: str) -> ModemError | None:
    """The error a final result line reports, or ``None`` for ``OK``."""
    if line == "OK":
        return None
    for prefix, kind in (("+CMS ERROR:", "cms"), ("+CME ERROR:", "cme")):
        if line.startswith(prefix):
            value = line[len(prefix):].strip()
            if value.isdigit():
                code = int(value)
                return ModemError(kind, code, kind == "cms" and cms_is_permanent(code))
            # verbose mode (CMEE=2) despite our AT+CMEE=1: keep the text, retry
            return ModemError(kind, None, False, line)
    return ModemError("error", None, False, line)


def is_final(line: str) -> bool:
    return line in ("OK", "ERROR") or line.startswith(("+CMS ERROR:", "+CME ERROR:"))


# ---------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Ready:
    """The modem answered the whole initialisation and is in PDU mode."""


@dataclass(frozen=True)
class Submitted:
    """Every part of one message was accepted; the +CMGS message references in order."""

    references: tuple[int, ...]


@dataclass(frozen=True)
class Failed:
    """The current job stopped. ``sent`` holds the references of parts already accepted."""

    error: ModemError
    sent: tuple[int, ...] = ()


Event = Ready | Submitted | Failed


# ---------------------------------------------------------------------------- the session


@dataclass
class _Step:
    command: bytes            # written on entry (without the PDU)
    expect: str = ""          # information response prefix to capture
    pdu: bytes = b""          # sent after the "> " prompt
    timeout: float = 5.0
    any_final: bool = False   # any final result is fine (the wake-up AT)


class AtSession:
    """One modem's dialogue; one job (initialise or submit) at a time.

    ``command_timeout`` bounds each command and the wait for the prompt; ``send_timeout``
    the wait for ``+CMGS`` after Ctrl-Z (the network may take tens of seconds).
    """

    def __init__(self, pin: str | None = None, command_timeout: float = 5.0,
                 send_timeout: float = 60.0) -> None:
        self.pin = pin
        self.command_timeout = command_timeout
        self.send_timeout = send_timeout
        self._out = bytearray()
        self._buf = bytearray()
        self._events: deque[Event] = deque()
        self._steps: deque[_Step] = deque()
        self._step: _Step | None = None
        self._job = ""
        self._info: list[str] = []
        self._refs: list[int] = []
        self._prompted = False
        #: seconds the current step may wait; ``None`` when idle. ``timer`` changes each time
        #: a new wait starts, so the glue re-arms its timer then and only then (a stream of
        #: unsolicited codes must not keep extending the wait).
        self.timeout: float | None = None
        self.timer = 0

    # -- inputs

    def initialise(self) -> None:
        self._begin("init", [
            _Step(ESC + b"AT\r", any_final=True, timeout=self.command_timeout),
            _Step(b"ATE0\r", timeout=self.command_timeout),
            _Step(b"AT+CMEE=1\r", timeout=self.command_timeout),
            _Step(b"AT+CPIN?\r", expect="+CPIN:", timeout=self.command_timeout),
            _Step(b"AT+CMGF=0\r", timeout=self.command_timeout),
        ])

    def submit(self, parts: Sequence[Part]) -> None:
        self._begin("submit", [
            _Step(b"AT+CMGS=%d\r" % p.tpdu_length, expect="+CMGS:",
                  pdu=p.pdu_hex.encode("ascii") + CTRL_Z, timeout=self.command_timeout)
            for p in parts])

    def receive_data(self, data: bytes) -> None:
        self._buf += data
        while self._step is not None:
            if self._step.pdu and not self._prompted:
                # TS 27.005 §3.5.1: the prompt is "<CR><LF><greater_than><space>", no line end
                stripped = self._buf.lstrip(b"\r\n")
                if stripped.startswith(b">"):
                    del self._buf[:len(self._buf) - len(stripped) + 1]
                    if self._buf[:1] == b" ":
                        del self._buf[:1]
                    self._prompted = True
                    self._out += self._step.pdu
                    self.timeout = self.send_timeout
                    self.timer += 1
                    continue
            line = self._next_line()
            if line is None:
                break
            self._line(line)
        if len(self._buf) > MAX_LINE:
            self._buf.clear()

    def timed_out(self) -> None:
        if self._step is None:
            return
        what = self._step.command.strip(b"\r\x1b").decode("ascii", "replace")
        stage = "+CMGS after the PDU" if self._prompted else (
            "the > prompt" if self._step.pdu else "an answer")
        self._fail(ModemError("timeout", detail=f"no {stage} to {what}"))

    # -- outputs

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    @property
    def busy(self) -> bool:
        return self._step is not None

    # -- internals

    def _begin(self, job: str, steps: list[_Step]) -> None:
        if self._step is not None:
            raise RuntimeError("the modem is busy with another job")
        self._job = job
        self._refs = []
        self._steps = deque(steps)
        self._buf.clear()  # whatever came before belongs to nobody
        self._advance()

    def _advance(self) -> None:
        self._info = []
        self._prompted = False
        if not self._steps:
            self._step = None
            self.timeout = None
            self._events.append(Ready() if self._job == "init" else Submitted(tuple(self._refs)))
            return
        self._step = self._steps.popleft()
        self._out += self._step.command
        self.timeout = self._step.timeout
        self.timer += 1

    def _fail(self, error: ModemError) -> None:
        self._step = None
        self._steps.clear()
        self.timeout = None
        self._events.append(Failed(error, tuple(self._refs)))

    def _next_line(self) -> str | None:
        while True:
            for i, b in enumerate(self._buf):
                if b in (0x0D, 0x0A):
                    raw = bytes(self._buf[:i])
                    del self._buf[:i + 1]
                    break
            else:
                return None
            line = raw.decode("ascii", "replace").strip()
            if line:
                return line

    def _line(self, line: str) -> None:
        step = self._step
        assert step is not None
        if line == step.command.strip(b"\r\x1b").decode("ascii", "replace"):
            return  # echo (before ATE0 took effect)
        if step.expect and line.startswith(step.expect):
            self._info.append(line[len(step.expect):].strip())
            return
        if not is_final(line):
            return  # an unsolicited result code
        if step.any_final:
            self._advance()
            return
        error = classify(line)
        if error is not None:
            if step.command.startswith(b"AT+CPIN="):
                error = ModemError("pin", error.code, False, f"the SIM refused the PIN: {line}")
            self._fail(error)
            return
        if step.command == b"AT+CPIN?\r":
            self._pin_answer()
            return
        if step.expect == "+CMGS:":
            ref = self._info[0].split(",")[0].strip() if self._info else ""
            if not ref.isdigit():
                self._fail(ModemError("protocol", detail="OK without a +CMGS reference"))
                return
            self._refs.append(int(ref))
        self._advance()

    def _pin_answer(self) -> None:
        state = self._info[0].strip('"') if self._info else "READY"
        if state == "READY":
            self._advance()
        elif state == "SIM PIN" and self.pin:
            self._steps.appendleft(_Step(b'AT+CPIN="%s"\r' % self.pin.encode("ascii"),
                                         timeout=self.command_timeout))
            self._advance()
        elif state == "SIM PIN":
            self._fail(ModemError("pin", detail="the SIM asks for its PIN and no pin is set "
                                            "(or the configured one was refused)"))
        else:
            self._fail(ModemError("pin", detail=f"the SIM is not ready: +CPIN: {state}"))
