"""One simulated detector of the demo transport: pure code, no clock, no reactor (the caller
passes ``t``, Unix seconds).

It measures what its profile's :class:`~plugins.simulators.scenario.Scenario` says (noise
drawn from a ``random.Random`` seeded by the device id), sits in front of a breaker, and
takes the commands a detector with a shunt-trip breaker takes. Its frames are text::

    temperature/T1=25.31;residual_current/L1=30.12;voltage/A=220.10;...;active_power=6402.11
    event:relay_open=breaker opened by command     a notice (a state event, no end)
    alarm:temperature/T1=1                          its own latched alarm (1 on, 0 off)

Commands (:data:`ACTIONS`; each arrives as the frame ``cmd:<action>`` that
:meth:`plugins.simulators.demo.SimulatedModel.encode_command` builds):

* ``trip``: the breaker opens: the phase currents, the residual current and the power read 0
  until ``close``; a ``relay_open`` notice (``relay_closed`` on ``close``), the codes the
  LwM2M relay uses.
* ``reset``: clears the alarms the device latched (with ``latching``: an alarm stays on
  once the device's own set point was passed, as a fire detector's alarm output does, until
  someone resets it) and the silenced buzzer; a ``reset`` notice.
* ``silence``: the buzzer stops (the alarms stay latched); a ``silenced`` notice.
* ``self_test``: a ``self_test`` notice ("self-test passed").

Each command returns the device's acknowledgement text.
"""

from __future__ import annotations

import random

from plugins.simulators.scenario import DEVICE_SET_POINTS, Scenario

__all__ = ["ACTIONS", "PROFILES", "DemoDevice", "Refused"]

PROFILES = ("normal", "overheat", "leakage", "flaky", "silent")
ACTIONS = ("reset", "silence", "self_test", "trip", "close")
POWER_FACTOR = 0.97

#: the device's own alarms: (rule, quantity, channel) it latches past DEVICE_SET_POINTS
_WATCHED = (("temperature", "temperature", "T1"), ("residual_current", "residual_current", "L1"))


class Refused(Exception):
    """The device does not take this command."""


class DemoDevice:
    """The state of one simulated detector of ``profile`` (see the module docstring)."""

    def __init__(self, profile: str, period: float, seed: str, latching: bool = False) -> None:
        self.scenario = Scenario.periodic(profile, period)
        self.rng = random.Random(seed)
        self.latching = latching
        self.closed = True
        self.silenced = False
        #: (rule, channel) of every alarm latched on, until ``reset``
        self.latched: set[tuple[str, str]] = set()
        #: (code, message) to report with the next frame
        self.notices: list[tuple[str, str]] = []

    def silent(self, t: float) -> bool:
        """Whether the device is out of reach at ``t`` (``flaky``, ``silent``)."""
        return self.scenario.silent(t)

    def frame(self, t: float) -> bytes | None:
        """The frame the device sends at ``t``, or ``None`` while it is silent."""
        if self.silent(t):
            return None
        sc, rng = self.scenario, self.rng
        temp = sc.value("temperature", "T1", t, rng.uniform(-1, 1))
        residual = sc.value("residual_current", "L1", t, rng.uniform(-1, 1))
        volts = [sc.value("voltage", p, t, rng.uniform(-1, 1)) for p in "ABC"]
        amps = [sc.value("current", p, t, rng.uniform(-1, 1)) for p in "ABC"]
        if not self.closed:  # the breaker is open: nothing flows downstream of it
            residual, amps = 0.0, [0.0, 0.0, 0.0]
        power = POWER_FACTOR * sum(v * a for v, a in zip(volts, amps, strict=True))
        points = [("temperature", "T1", temp), ("residual_current", "L1", residual)]
        points += [("voltage", p, v) for p, v in zip("ABC", volts, strict=True)]
        points += [("current", p, a) for p, a in zip("ABC", amps, strict=True)]
        items = [f"{q}/{c}={v:.2f}" for q, c, v in points]
        items.append(f"active_power={power:.2f}")
        if self.latching:
            values = {"T1": temp, "L1": residual}
            for rule, _quantity, channel in _WATCHED:
                if values[channel] >= DEVICE_SET_POINTS[rule]:
                    self.latched.add((rule, channel))
                items.append(f"alarm:{rule}/{channel}={int((rule, channel) in self.latched)}")
        items += [f"event:{code}={message}" for code, message in self.notices]
        self.notices.clear()
        return ";".join(items).encode("ascii")

    def receive(self, data: bytes) -> str:
        """Carry out the command frame ``data`` (``cmd:<action>``); the acknowledgement."""
        action = data.decode("ascii", "replace").removeprefix("cmd:")
        if action == "trip":
            return self._breaker(False)
        if action == "close":
            return self._breaker(True)
        if action == "reset":
            cleared = len(self.latched)
            self.latched.clear()
            self.silenced = False
            self.notices.append(("reset", f"reset, {cleared} latched alarm(s) cleared"))
            return f"reset: {cleared} latched alarm(s) cleared"
        if action == "silence":
            self.silenced = True
            self.notices.append(("silenced", "buzzer silenced"))
            return "buzzer silenced"
        if action == "self_test":
            self.notices.append(("self_test", "self-test passed"))
            return "self-test passed"
        raise Refused(f"the demo detector does not take {action!r}")

    def _breaker(self, closed: bool) -> str:
        word = "closed" if closed else "opened"
        if self.closed == closed:
            return f"breaker already {word}"
        self.closed = closed
        self.notices.append((f"relay_{'closed' if closed else 'open'}",
                             f"breaker {word} by command"))
        return f"breaker {word}"
