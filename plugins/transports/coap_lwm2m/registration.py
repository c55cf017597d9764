"""The LwM2M registration interface without I/O: query parameters, bindings, lifetimes,
location ids, reachability and expiry.

The table answers "who is registered, where do I reach them, and may I talk to them now?".
A registration lives ``lifetime`` seconds from its last Register or Update; after that (plus
the transport's grace) it is gone, exactly as a Leshan or Wakaama server forgets it, and the
device must register again (an Update to a forgotten location gets 4.04, which makes every
client we know of register anew).

Addresses are opaque here (the glue stores aiocoap's remote objects): NB-IoT traffic passes
carrier NAT, whose mappings change between wake-ups, so the address of the latest message
from a device is the only one worth sending to.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.interfaces import IReactorTime

from hub.contracts.lwm2m import Path

#: Binding letters: UDP, TCP, SMS, Non-IP; Q is LwM2M 1.0's queue-mode suffix.
_BINDING = re.compile(r"[UTSNQ]{1,6}")
#: The versions spoken: 1.0 and 1.1, with or without a patch number (coap-node announces
#: ``1.0.0``); the patch number changes nothing on the wire, so it is dropped.
_VERSION = re.compile(r"(1\.[01])(?:\.(?:0|[1-9][0-9]?))?")
_MAX_DIGITS = 10  # of a lifetime: 9,999,999,999 s, far beyond any bound configured


class RegistrationError(Exception):
    """A request the registration interface refuses; ``code`` names the CoAP response
    (``bad_request``, ``not_found``, ``precondition_failed``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Params:
    """What a Register or Update query said; ``None`` where it said nothing."""

    endpoint: str | None = None
    lifetime: float | None = None
    lwm2m: str | None = None
    binding: str | None = None
    queue: bool = False  # the LwM2M 1.1 ``Q`` flag
    sms: str | None = None
    preferred_format: int | None = None  # ``pct`` (1.1)


def parse_query(query: Sequence[str]) -> Params:
    """Parse the Uri-Query options of a Register or Update (``ep=…``, ``lt=…``, ``Q``).

    Unknown keys are ignored: vendors add their own (``apn=``, ``imsi=``), and refusing them
    would lock a device out for no gain.
    """
    values: dict[str, str | None] = {}
    for item in query:
        key, sep, value = item.partition("=")
        values.setdefault(key, value if sep else None)
    lifetime = None
    if values.get("lt") is not None:
        text = values["lt"] or ""
        # digits capped before int(): 400 of them overflow float(), 5,000 hit Python's
        # int-from-text limit; both are a bad request, not an internal error
        if not text.isascii() or not text.isdigit() or len(text) > _MAX_DIGITS:
            raise RegistrationError("bad_request", f"lt={text[:20]!r} is not a number of "
                                    "seconds")
        lifetime = float(int(text))
    lwm2m = values.get("lwm2m")
    if lwm2m is not None:
        m = _VERSION.fullmatch(lwm2m)
        if m is None:
            raise RegistrationError("precondition_failed", f"LwM2M version {lwm2m[:20]!r} is "
                                    "not spoken here (1.0, 1.0.x, 1.1 or 1.1.x)")
        lwm2m = m.group(1)
    binding = values.get("b")
    if binding is not None and not _BINDING.fullmatch(binding):
        raise RegistrationError("bad_request", f"b={binding!r} is not a binding (U, UQ, S, "
                                "SQ, US, UQS or letters of UTSN)")
    pct = values.get("pct")
    if pct is not None and not (pct.isascii() and pct.isdigit() and len(pct) <= 5
                                and int(pct) < 65536):
        raise RegistrationError("bad_request", f"pct={pct[:20]!r} is not a content format")
    if "ep" in values and not values["ep"]:
        raise RegistrationError("bad_request", "ep= is empty")
    return Params(endpoint=values.get("ep"), lifetime=lifetime, lwm2m=lwm2m, binding=binding,
                  queue="Q" in values, sms=values.get("sms"),
                  preferred_format=int(pct) if pct is not None else None)


def queue_mode(binding: str, q_flag: bool) -> bool:
    """Whether a device in ``binding`` (and the 1.1 ``Q`` flag) sleeps between messages."""
    return q_flag or "Q" in binding


@dataclass
class Registration:
    """One registered endpoint (or, with ``location`` ``None``, a plain CoAP device known
    from its uplinks, which counts as always in queue mode)."""

    device: str
    endpoint: str
    location: str | None
    lifetime: float | None
    lwm2m: str = "1.0"
    binding: str = "U"
    queue_mode: bool = False
    sms: str | None = None
    preferred_format: int | None = None
    paths: tuple[Path, ...] = ()
    updated_at: float = 0.0  # last Register or Update: the lifetime counts from here
    last_heard: float = 0.0  # any message
    remote: Any = None
    #: set when a request went unanswered: the device is asleep until it speaks again
    silent_since: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # the glue's per-device state

    def expires_at(self, grace: Callable[[float], float]) -> float | None:
        if self.lifetime is None:
            return None
        return self.updated_at + self.lifetime + grace(self.lifetime)


class RegistrationTable:
    """Registrations by location id and by device id, on an injected clock.

    :param grace: ``grace(lifetime)`` → seconds a registration outlives its lifetime.
    """

    def __init__(self, clock: IReactorTime, grace: Callable[[float], float],
                 default_lifetime: float = 86400.0, min_lifetime: float = 1.0,
                 max_lifetime: float = 30 * 86400.0,
                 on_displaced: Callable[[Registration, str], object] | None = None) -> None:
        self._clock = clock
        self._grace = grace
        self._default_lifetime = default_lifetime
        self._bounds = (min_lifetime, max_lifetime)
        self._by_location: dict[str, Registration] = {}
        self._by_device: dict[str, Registration] = {}
        # address -> the device that last spoke from it. A carrier NAT may hand a binding
        # that one module gave up to another module: requests for the first device (its
        # observations, a trip) must not go to the second.
        self._by_remote: dict[Any, str] = {}
        #: told ``(registration, device now at its address)`` when a device's address was
        #: taken by another device; the registration's ``remote`` is then ``None``
        self.on_displaced = on_displaced

    def __len__(self) -> int:
        return len(self._by_location)

    def __iter__(self) -> Iterator[Registration]:
        return iter(list(self._by_device.values()))

    def get(self, device: str) -> Registration | None:
        return self._by_device.get(device)

    def at(self, location: str) -> Registration | None:
        return self._by_location.get(location)

    def lifetime(self, requested: float | None) -> float:
        """The lifetime granted: the request clamped to the configured bounds."""
        lo, hi = self._bounds
        return min(max(self._default_lifetime if requested is None else requested, lo), hi)

    def register(self, device: str, params: Params, paths: Sequence[Path],
                 remote: Any) -> tuple[Registration, Registration | None]:
        """A Register from ``device``: the new registration and the one it replaced (a
        device that rebooted registers again without de-registering)."""
        now = self._clock.seconds()
        old = self._drop(device)
        location = secrets.token_hex(4)
        while location in self._by_location:
            location = secrets.token_hex(4)
        binding = params.binding or "U"
        reg = Registration(
            device=device, endpoint=params.endpoint or device, location=location,
            lifetime=self.lifetime(params.lifetime), lwm2m=params.lwm2m or "1.0",
            binding=binding, queue_mode=queue_mode(binding, params.queue), sms=params.sms,
            preferred_format=params.preferred_format, paths=tuple(paths), updated_at=now,
            last_heard=now, remote=remote)
        self._by_location[location] = reg
        self._by_device[device] = reg
        self._claim(reg, remote)
        return reg, old

    def update(self, location: str, params: Params, paths: Sequence[Path] | None,
               remote: Any) -> tuple[Registration, bool]:
        """An Update to ``location``: the registration, and whether the device's address
        changed since its last message. Raises ``RegistrationError("not_found")``."""
        reg = self._live(location)
        now = self._clock.seconds()
        if params.lifetime is not None:
            reg.lifetime = self.lifetime(params.lifetime)
        if params.binding is not None:
            reg.binding = params.binding
        if reg.lwm2m == "1.0" and params.binding is not None:
            # 1.0: queue mode is part of the binding (UQ, SQ, UQS), so a new binding says
            # whether the device still sleeps
            reg.queue_mode = queue_mode(params.binding, params.queue)
        elif params.queue or params.binding is not None and "Q" in params.binding:
            reg.queue_mode = True
        # 1.1 and later: queue mode is the Register's Q parameter, which an Update does not
        # carry; an Update repeating b=U leaves the mode chosen at Register alone
        if params.sms is not None:
            reg.sms = params.sms
        if paths is not None:
            reg.paths = tuple(paths)
        reg.updated_at = now
        return reg, self.heard(reg.device, remote)

    def deregister(self, location: str) -> Registration:
        """A De-register of ``location``; raises ``RegistrationError("not_found")``."""
        reg = self._live(location)
        self._drop(reg.device)
        return reg

    def forget(self, device: str) -> Registration | None:
        """End ``device``'s registration (the device was deleted or renamed); it is
        unknown until it registers again."""
        return self._drop(device)

    def heard(self, device: str, remote: Any) -> bool:
        """Any message from ``device``: remember its address; whether the address changed."""
        reg = self._by_device.get(device)
        if reg is None:
            return False
        changed = remote is not None and reg.remote is not None and remote != reg.remote
        if remote is not None:
            self._claim(reg, remote)
        reg.last_heard = self._clock.seconds()
        reg.silent_since = None
        return changed

    def device_at(self, remote: Any) -> str | None:
        """The device whose latest message came from ``remote``, if any."""
        return self._by_remote.get(remote)

    def uplink(self, device: str, remote: Any) -> tuple[Registration, bool]:
        """A plain CoAP uplink from ``device``: its registration (a session without
        lifetime if it never registered) and whether its address changed."""
        reg = self._by_device.get(device)
        if reg is None:
            now = self._clock.seconds()
            reg = Registration(device=device, endpoint=device, location=None, lifetime=None,
                               queue_mode=True, updated_at=now, last_heard=now, remote=remote)
            self._by_device[device] = reg
            self._claim(reg, remote)
            return reg, False
        return reg, self.heard(device, remote)

    def silent(self, device: str) -> None:
        """A request to ``device`` went unanswered: hold its commands until it speaks."""
        reg = self._by_device.get(device)
        if reg is not None and reg.silent_since is None:
            reg.silent_since = self._clock.seconds()

    def reachable(self, device: str, window: float, recent: float | None = None) -> bool:
        """Whether a request to ``device`` may go out now: it is registered (or sent an
        uplink), has not ignored a request since it last spoke, and spoke less than
        ``window`` seconds ago in queue mode, or less than ``recent`` seconds ago otherwise
        (``None``: any time within its lifetime)."""
        reg = self._by_device.get(device)
        if reg is None or reg.silent_since is not None or reg.remote is None:
            return False
        now = self._clock.seconds()
        expires = reg.expires_at(self._grace)
        if expires is not None and now > expires:
            return False
        if reg.queue_mode:
            return now - reg.last_heard < window
        # an NB-IoT module without queue mode still loses its NAT mapping or drops into
        # PSM: after a long silence a request would cost a timeout, so it waits instead
        return recent is None or now - reg.last_heard < recent

    def expire(self) -> list[Registration]:
        """Forget registrations whose lifetime and grace ran out; returns them."""
        now = self._clock.seconds()
        gone = [r for r in self._by_location.values()
                if (t := r.expires_at(self._grace)) is not None and t < now]
        for reg in gone:
            self._drop(reg.device)
        return gone

    def _live(self, location: str) -> Registration:
        reg = self._by_location.get(location)
        if reg is None:
            raise RegistrationError("not_found", f"no registration at rd/{location}")
        expires = reg.expires_at(self._grace)
        if expires is not None and self._clock.seconds() > expires:
            self._drop(reg.device)
            raise RegistrationError("not_found", f"the registration at rd/{location} expired")
        return reg

    def _drop(self, device: str) -> Registration | None:
        reg = self._by_device.pop(device, None)
        if reg is not None and reg.location is not None:
            self._by_location.pop(reg.location, None)
        if reg is not None and reg.remote is not None and self._by_remote.get(reg.remote) == device:
            del self._by_remote[reg.remote]
        return reg

    def _claim(self, reg: Registration, remote: Any) -> None:
        """``reg``'s device spoke from ``remote``: the address is its own from now on."""
        if remote is None:
            return
        if reg.remote is not None and reg.remote != remote and (
                self._by_remote.get(reg.remote) == reg.device):
            del self._by_remote[reg.remote]
        reg.remote = remote
        other = self._by_remote.get(remote)
        self._by_remote[remote] = reg.device
        if other is None or other == reg.device:
            return
        before = self._by_device.get(other)
        if before is not None and before.remote == remote:
            # not reachable until it speaks again, from wherever it is now
            before.remote = None
            if self.on_displaced is not None:
                self.on_displaced(before, reg.device)
