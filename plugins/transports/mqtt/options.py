"""The ``mqtt`` transport's configuration: options, their checks (every error names its key
path) and the topic templates (``esm/{device}/up``) with their subscription filters."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger

from hub.validate import Invalid, Section, boolean, choice, describe, integer, number, string

__all__ = ["Invalid", "MqttOptions", "TlsOptions", "TopicTemplate", "check_address",
           "check_options"]

_log = Logger(namespace="hub.mqtt")

class TopicTemplate:
    """``esm/{device}/up``: the subscription filter ``esm/+/up``, the topic of one device,
    and the device part of a received topic."""

    def __init__(self, template: str) -> None:
        if template.count("{device}") != 1:
            raise Invalid(f"{template!r} must contain {{device}} exactly once")
        if any(c in template.replace("{device}", "") for c in "+#{}") or not template:
            raise Invalid(f"{template!r} may hold no wildcards or other placeholders")
        levels = template.split("/")
        if "{device}" not in levels:
            raise Invalid(f"{template!r}: {{device}} must be a whole topic level")
        self.template = template
        self.filter = template.replace("{device}", "+")
        head, tail = template.split("{device}")
        self._head, self._tail = head, tail

    def topic(self, device: str) -> str:
        return self._head + device + self._tail

    def match(self, topic: str) -> str | None:
        """The device part of ``topic``, or ``None`` if the topic is not of this template."""
        head, tail = self._head, self._tail
        if len(topic) <= len(head) + len(tail) or not topic.startswith(head) \
                or not topic.endswith(tail):
            return None
        part = topic[len(head):len(topic) - len(tail)]
        return None if "/" in part else part


def _template(v: Any) -> TopicTemplate:
    return TopicTemplate(string()(v))


def _optional_template(v: Any) -> TopicTemplate | None:
    """A template, or ``null`` to switch that kind of message off."""
    return None if v is None else _template(v)


# ---------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class TlsOptions:
    ca_file: str | None = None  # None: the system's trust store
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False  # skip the host name check (test rigs only)


@dataclass(frozen=True)
class MqttOptions:
    host: str = "127.0.0.1"
    port: int | None = None  # 1883, or 8883 with TLS
    tls: TlsOptions | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a log line
    client_id: str | None = None  # default hub-<transport name>
    protocol: str = "5"  # "5" or "3.1.1"
    keepalive: int = 60
    session_expiry: int = 7 * 86400  # s the broker keeps the session while the hub is away
    uplink: TopicTemplate = field(default_factory=lambda: TopicTemplate("esm/{device}/up"))
    status: TopicTemplate | None = field(
        default_factory=lambda: TopicTemplate("esm/{device}/status"))
    command: TopicTemplate = field(default_factory=lambda: TopicTemplate("esm/{device}/down"))
    result: TopicTemplate | None = field(
        default_factory=lambda: TopicTemplate("esm/{device}/ack"))
    shared_group: str | None = None
    #: whether the result topic is shared too. Off, every connection (of every hub) gets
    #: every result and the one that published the command completes it: what cluster
    #: edges need, since a result may reach another edge than the command left from
    shared_results: bool = True
    connections: int = 1
    receive_maximum: int = 1000  # unacknowledged QoS 1 messages the broker may send us
    max_payload: int = 65536
    command_timeout: float = 30.0
    reconnect_initial: float = 1.0
    reconnect_max: float = 60.0
    engine: str = "paho"  # or "native": our own codec on the reactor (native_engine)

    def subscriptions(self) -> list[str]:
        """The topic filters a connection subscribes to (QoS 1), each under
        ``$share/<shared_group>/`` if the stream is shared."""
        share = f"$share/{self.shared_group}/" if self.shared_group else ""
        out = [share + t.filter for t in (self.uplink, self.status) if t is not None]
        if self.result is not None:
            out.append((share if self.shared_results else "") + self.result.filter)
        return out

    def connection_names(self, transport: str, index: int) -> tuple[str, str]:
        """(the name in log lines, the client id) of connection ``index``: with several
        connections each has its own, since the broker keeps one session per client id."""
        several = self.connections > 1
        base = self.client_id or f"hub-{transport}"
        return (transport + (f"#{index}" if several else ""),
                base + (f"-{index}" if several else ""))

    @property
    def broker_port(self) -> int:
        return self.port or (8883 if self.tls else 1883)

    @property
    def max_packet(self) -> int:
        """The longest packet we take: a max_payload payload plus room for its topic and
        properties. MQTT 5 tells the broker (Maximum Packet Size), which then discards
        longer messages; longer ones that still come are skipped and acknowledged. Between
        max_payload and this, a payload is refused as a decode error with its device."""
        return min(self.max_payload + 65536 + 8, 268_435_460)


def _readable_file(v: Any) -> str:
    """A path the hub can read now: a missing CA or key is a configuration error at check
    time, not a reconnect loop at run time."""
    path = string()(v)
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:
        raise Invalid(f"cannot read {path!r}: {e.strerror or e}") from None
    return path


def _tls(section: Section) -> TlsOptions | None:
    raw = section.raw("tls", None)
    if raw is None or raw is False:
        return None
    if raw is True:
        return TlsOptions()
    s = section.section("tls")
    opts = TlsOptions(
        ca_file=s.get("ca_file", _readable_file, None),
        cert_file=s.get("cert_file", _readable_file, None),
        key_file=s.get("key_file", _readable_file, None),
        insecure=s.get("insecure", boolean, False))
    s.finish()
    if ("cert_file" in s) != ("key_file" in s):
        section.checker.error(s.path, "cert_file and key_file go together")
        return opts
    if ("cert_file" in s and opts.cert_file is None) or ("key_file" in s
                                                          and opts.key_file is None):
        return opts  # unreadable: said already
    # the files exist; whether they are PEM that OpenSSL takes is the next question
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for key, load in (("ca_file", lambda: ctx.load_verify_locations(cafile=opts.ca_file)),
                      ("cert_file", lambda: ctx.load_cert_chain(opts.cert_file,
                                                                opts.key_file))):
        if getattr(opts, key) is None:
            continue
        try:
            load()
        except (ssl.SSLError, OSError) as e:
            what = "a CA certificate" if key == "ca_file" else "a certificate and its key"
            why = (e.reason or e.strerror or str(e)) if isinstance(e, ssl.SSLError) else e
            section.checker.error(s.path / key, f"{getattr(opts, key)!r} is not {what} in "
                                  f"PEM, or they do not match ({why})" if key == "cert_file"
                                  else f"{opts.ca_file!r} is not {what} in PEM ({why})")
    return opts


def check_options(section: Section) -> MqttOptions:
    """Check ``transports.<name>`` of type ``mqtt``; every error names its key path."""
    d = MqttOptions()
    topics = section.section("topics")
    opts = MqttOptions(
        host=section.get("host", string(), d.host),
        port=section.get("port", integer(1, 65535), None),
        tls=_tls(section),
        username=section.get("username", string(), None),
        password=section.get("password", string(), None),
        client_id=section.get("client_id", string(r"[0-9A-Za-z_.:\-]{1,64}",
                                                  "a client id of 1-64 letters, digits, _.:-"),
                              None),
        protocol=str(section.get("protocol", lambda v: choice("5", "3.1.1")(str(v)), "5")),
        keepalive=section.get("keepalive", integer(5, 65535), d.keepalive),
        session_expiry=section.get("session_expiry", integer(0, 0xFFFFFFFF), d.session_expiry),
        uplink=topics.get("uplink", _template, d.uplink),
        status=topics.get("status", _optional_template, d.status),
        command=topics.get("command", _template, d.command),
        result=topics.get("result", _optional_template, d.result),
        shared_group=section.get("shared_group", string(r"[^/+#$]{1,64}", "a group name "
                                                        "without / + # $"), None),
        shared_results=section.get("shared_results", boolean, True),
        connections=section.get("connections", integer(1, 64), 1),
        receive_maximum=section.get("receive_maximum", integer(1, 65535), d.receive_maximum),
        max_payload=section.get("max_payload", integer(16, 256 << 20), d.max_payload),
        command_timeout=section.get("command_timeout", number(0.1, 86400, "s"), 30.0),
        reconnect_initial=section.get("reconnect_initial", number(0.01, 600, "s"), 1.0),
        reconnect_max=section.get("reconnect_max", number(0.1, 3600, "s"), 60.0),
        engine=section.get("engine", choice("paho", "native"), d.engine),
    )
    topics.finish()
    section.finish()
    if opts.password is not None and opts.username is None:
        section.checker.error(section.path / "password", "a password needs a username")
    if opts.connections > 1 and opts.shared_group is None:
        section.checker.error(section.path / "connections", "several connections need "
                              "shared_group, or each would receive every message")
    if opts.session_expiry == 0 and opts.protocol == "5":
        _log.warn("mqtt session_expiry 0: messages published while the hub is away are lost")
    return opts


def check_address(address: Any) -> str:
    """A device's topic id: a string (or number) that fits in one topic level."""
    if isinstance(address, int) and not isinstance(address, bool):
        address = str(address)
    if not isinstance(address, str) or not address:
        raise Invalid(f"expected the device's id in its topics, got {describe(address)}")
    if any(c in address for c in "/+#\x00"):
        raise Invalid(f"{address!r} cannot be one topic level (no / + #)")
    return address

