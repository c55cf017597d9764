"""The SMS-provider contract: one interface behind which every SMS provider sits (a cloud
service, a local HTTP gateway, a GSM modem). The ``sms`` sink renders the message; the
provider only delivers it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["SendResult", "SmsMessage", "SmsProvider"]


@dataclass(frozen=True)
class SmsMessage:
    """One text to send to one or more phones.

    ``text`` is the message fully rendered by the sink (what a GSM modem or a local gateway
    sends as is). Cloud providers in mainland China only send pre-approved templates, so the
    same message also travels as ``template`` (the message kind: ``alarm``, ``fault``,
    ``offline``, ``recovery``, ``summary``; the provider maps it to its own template code)
    and ``params`` (the template's variables, all strings). ``key`` identifies the message
    for logs and for duplicate suppression on the provider's side where one exists.
    """

    phones: tuple[str, ...]  # E.164, e.g. "+8613800138000"
    text: str
    template: str
    params: Mapping[str, str]
    key: str


@dataclass(frozen=True)
class SendResult:
    """What the provider said about one phone number of a :class:`SmsMessage`.

    ``permanent`` marks a failure that a retry cannot mend (an invalid number, a template
    the provider rejected, a signature it refused): the sink records it and raises a fault
    instead of retrying.
    """

    phone: str
    ok: bool
    message_id: str = ""
    permanent: bool = False
    error: str = ""


@runtime_checkable
class SmsProvider(Protocol):
    """The one interface behind which every SMS provider sits.

    ``send`` returns a Deferred that fires with one :class:`SendResult` per phone of the
    message, in order. It errbacks only when the attempt as a whole failed in a way worth
    retrying (no connection, a timeout, an HTTP 5xx, a modem that does not answer): the
    sink then retries the whole message with backoff.

    Optional attributes the sink reads when present: ``max_parts`` (the most parts a text
    may take), ``reserved_chars`` (room the provider's signature takes in each text) and
    ``send_deadline`` (seconds a send handed over now may take, e.g. behind a queue; the
    sink then waits at least that long before it counts the attempt as failed).
    """

    name: str

    def send(self, message: SmsMessage) -> Any: ...
