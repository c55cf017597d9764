"""A test SMS provider (type ``recording``): keeps every message it is given and answers as
told. A stand-in for the real providers, behind the same :class:`hub.contracts.SmsProvider`
interface; installed through a real entry point by the tests.

Options: ``log`` (a file: one JSON line per message, for a hub running as a process),
``max_parts``, ``reserved_chars``. Tests steer it through :data:`CONTROL`:

* ``mode = "ok"``: each phone accepted with message id ``m<n>``;
* ``mode = "down"``: the Deferred fails (connection refused): the sink retries;
* ``mode = "busy"``: a result that is neither ok nor permanent (flow control);
* ``mode = "hold"``: the Deferred waits in ``CONTROL.held`` until the test fires it;
* ``bad_phones``: these get a permanent failure (invalid number).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from twisted.internet import defer
from twisted.internet.error import ConnectionRefusedError

from hub import hookimpl
from hub.contracts import SendResult, SmsMessage, SmsProviderType
from hub.validate import Section, integer, string


@dataclass
class Control:
    mode: str = "ok"
    bad_phones: set[str] = field(default_factory=set)
    sent: list[SmsMessage] = field(default_factory=list)  # accepted
    attempts: list[SmsMessage] = field(default_factory=list)  # every call
    held: list[tuple[SmsMessage, defer.Deferred]] = field(default_factory=list)

    def reset(self) -> None:
        self.__init__()


CONTROL = Control()


@dataclass(frozen=True)
class Options:
    log: str | None
    max_parts: int | None
    reserved_chars: int


class Recording:
    name = "recording"

    def __init__(self, options: Options, reactor) -> None:
        self.options = options
        self.max_parts = options.max_parts
        self.reserved_chars = options.reserved_chars
        self.count = 0

    def results(self, message: SmsMessage) -> list[SendResult]:
        out = []
        for phone in message.phones:
            if phone in CONTROL.bad_phones:
                out.append(SendResult(phone, False, permanent=True, error="invalid number"))
            elif CONTROL.mode == "busy":
                out.append(SendResult(phone, False, error="flow control"))
            else:
                self.count += 1
                out.append(SendResult(phone, True, f"m{self.count}"))
        if any(r.ok for r in out):
            CONTROL.sent.append(message)
            if self.options.log:
                with open(self.options.log, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"phones": message.phones, "text": message.text,
                                        "template": message.template,
                                        "params": dict(message.params), "key": message.key},
                                       ensure_ascii=False) + "\n")
        return out

    def send(self, message: SmsMessage) -> defer.Deferred:
        CONTROL.attempts.append(message)
        if CONTROL.mode == "down":
            return defer.fail(ConnectionRefusedError("provider down"))
        if CONTROL.mode == "hold":
            d: defer.Deferred = defer.Deferred()
            CONTROL.held.append((message, d))
            return d.addCallback(lambda _: self.results(message))
        return defer.succeed(self.results(message))


def check(section: Section) -> Options:
    opts = Options(section.get("log", string(), None),
                   section.get("max_parts", integer(1, 10), None),
                   section.get("reserved_chars", integer(0, 60), 0))
    section.finish()
    return opts


@hookimpl
def hub_register_sms_providers():
    return [SmsProviderType("recording", Recording, check, "records messages (tests)")]
