"""SMS provider ``gsm_modem``: a GSM modem (短信猫) on a serial port, AT commands, PDU mode.

Configuration (the ``provider`` section of an ``sms`` sink)::

    provider:
      type: gsm_modem
      port: /dev/serial/by-id/usb-Quectel_EC20-if02-port0   # a stable udev name
      baudrate: 115200
      smsc: "+8613800100500"        # optional; default: the SMSC stored on the SIM
      pin: {env: SIM_PIN}           # optional; only if the SIM asks for one
      validity: 86400               # s, optional TP-VP (relative); default: the SMSC's
      command_timeout: 5            # s per AT command and for the "> " prompt
      send_timeout: 60              # s for +CMGS after the PDU (the network answers)
      max_parts: 6                  # the sms sink cuts its texts to fit
      inter_message_delay: 2        # s between two SMS
      reopen_initial: 1             # s before reopening after an error; doubles ...
      reopen_max: 60                # ... up to this

Text goes as GSM 7-bit when every character fits, else UCS-2 (all Chinese text), split
into concatenated parts when long (:mod:`.pdu`); the dialogue is in :mod:`.at`, the port and
queue in :mod:`.modem`.
"""

from __future__ import annotations

from typing import Any

from hub import hookimpl
from hub.config import Secret
from hub.contracts import SmsProviderType
from hub.validate import Invalid, Section, describe, integer, number, string
from plugins.sinks.sms_modem.modem import GsmModemProvider, ModemOptions

#: Rates pyserial accepts on Linux that modems use.
BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)


def _baudrate(v: Any) -> int:
    v = integer()(v)
    if v not in BAUDRATES:
        raise Invalid(f"{v} is not one of {', '.join(map(str, BAUDRATES))}")
    return v


def _pin(v: Any) -> str | None:
    if v is None:  # an {env:} or {file:} that could not be read: already reported
        return None
    if not isinstance(v, Secret):
        raise Invalid("write the PIN as {env: NAME} or {file: PATH}, not in the file itself"
                      if isinstance(v, (str, int)) else
                      f"expected {{env: NAME}} or {{file: PATH}}, got {describe(v)}")
    if not (v.isascii() and v.isdigit() and 4 <= len(v) <= 8):
        raise Invalid("the PIN must be 4 to 8 digits")  # never echo the value
    return v


def check_options(s: Section) -> ModemOptions:
    opts = ModemOptions(
        port=s.get("port", string(r"\S+", "a serial device path")),
        baudrate=s.get("baudrate", _baudrate, 115200),
        smsc=s.get("smsc", string(r"\+?[0-9]{1,20}", "a phone number such as +8613800100500"),
                   None),
        pin=s.get("pin", _pin, None),
        # TS 23.040 §9.2.3.12.1: relative TP-VP spans 5 minutes to 63 weeks
        validity=s.get("validity", number(300, 63 * 7 * 86400, "s"), None),
        command_timeout=s.get("command_timeout", number(0.1, 600, "s"), 5.0),
        send_timeout=s.get("send_timeout", number(1, 600, "s"), 60.0),
        max_parts=s.get("max_parts", integer(1, 255), 6),
        inter_message_delay=s.get("inter_message_delay", number(0, 3600, "s"), 2.0),
        reopen_initial=s.get("reopen_initial", number(0.01, 3600, "s"), 1.0),
        reopen_max=s.get("reopen_max", number(0.01, 86400, "s"), 60.0),
    )
    if (opts.reopen_initial is not None and opts.reopen_max is not None
            and opts.reopen_max < opts.reopen_initial):
        s.checker.error(s.path / "reopen_max", f"{opts.reopen_max:g} s is below "
                        f"reopen_initial ({opts.reopen_initial:g} s)")
    s.finish(allowed_extra=("type",))  # the sms sink reads "type" to find us
    return opts


@hookimpl
def hub_register_sms_providers() -> list[SmsProviderType]:
    return [SmsProviderType(
        name="gsm_modem",
        factory=lambda options, reactor: GsmModemProvider(options, reactor),
        check_options=check_options,
        description="GSM modem (短信猫) on a serial port: AT commands, PDU mode, UCS-2",
    )]
