"""Registry ids an LwM2M endpoint name may stand for.

NB-IoT platforms and modules write the endpoint name (the ``ep=`` of a Register) in a few
ways; the registry usually knows a device by its IMEI. :func:`identities` lists the ids to
look up, most specific first; the transport takes the first one the registry knows.

What is accepted:

- a bare IMEI: 14 digits (IMEI without check digit), 15 (IMEI) or 16 (IMEISV). The Luhn
  check digit is *not* verified: modules and test benches use made-up numbers, and a wrong
  check digit identifies no other device;
- ``urn:imei:<IMEI>`` -> the IMEI; ``urn:imei-imsi:<IMEI>-<IMSI>`` -> the IMEI, then the
  IMSI (6 to 15 digits);
- ``urn:imsi:``, ``urn:uuid:``, ``urn:dev:ops:``, ``urn:esn:``, ``urn:meid:`` -> the part
  after the prefix, then the whole name;
- ``<IMEI>;<IMSI>`` (the form OneNET modules are reported to use) -> the IMEI, the IMSI and
  the whole name;
- anything else, and any of the forms above whose digits do not fit -> the name itself.

URN prefixes match case-insensitively (RFC 8141: the namespace id is case-insensitive);
the ids keep the case they were written in.
"""

from __future__ import annotations

import re

_IMEI = re.compile(r"[0-9]{14,16}")
_IMSI = re.compile(r"[0-9]{6,15}")
_PREFIXED = ("urn:imsi:", "urn:uuid:", "urn:dev:ops:", "urn:esn:", "urn:meid:")


def identities(ep: str) -> list[str]:
    """Candidate registry ids for endpoint name ``ep``, most specific first, no repeats."""
    if not ep:
        return []
    lowered = ep.lower()
    if lowered.startswith("urn:imei:"):
        imei = ep[len("urn:imei:"):]
        return [imei] if _IMEI.fullmatch(imei) else [ep]
    if lowered.startswith("urn:imei-imsi:"):
        imei, _, imsi = ep[len("urn:imei-imsi:"):].partition("-")
        if _IMEI.fullmatch(imei) and _IMSI.fullmatch(imsi):
            return [imei, imsi]
        return [ep]
    for prefix in _PREFIXED:
        if lowered.startswith(prefix) and len(ep) > len(prefix):
            return [ep[len(prefix):], ep]
    imei, semicolon, imsi = ep.partition(";")
    if semicolon and _IMEI.fullmatch(imei) and _IMSI.fullmatch(imsi):
        return [imei, imsi, ep]
    return [ep]
