"""The ``api.ota:`` section: firmware repository and campaign limits (README "Firmware
updates (OTA)").

::

    api:
      ota:
        max_image_kb: 1024         # larger images are refused (413); max_body_kb bounds it too
        vendor_keys: [keys/vendor-ed25519.pub]   # PEM files (or inline base64/hex keys)
        require_signature: false   # true: unsigned images are refused
        max_active: 200            # devices of a campaign under way at once; a wave's others wait
        limits: {check: 21600, reset: 21600, deliver: 86400, download: 86400,
                 update: 21600, verify: 21600, poll_after: 3600, tries: 3, attempts: 3}
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hub.ota.images import load_public_key
from hub.ota.machine import Limits
from hub.validate import boolean, integer, number

if TYPE_CHECKING:
    from hub.validate import Section


@dataclass(frozen=True)
class OtaSettings:
    max_image: int = 1024 * 1024
    vendor_keys: tuple[Any, ...] = ()
    require_signature: bool = False
    limits: Limits = field(default_factory=Limits)
    max_active: int = 200


def parse_ota(api: Section, base: str) -> OtaSettings:
    s = api.section("ota")
    d = OtaSettings()
    keys = []
    raw_keys = s.raw("vendor_keys", []) or []
    if not isinstance(raw_keys, list):
        s.checker.error(s.path / "vendor_keys", "expected a list of keys or key files")
        raw_keys = []
    for i, item in enumerate(raw_keys):
        text = str(item)
        try:
            if "-----BEGIN" not in text and not _looks_inline(text):
                path = text if os.path.isabs(text) else os.path.join(base, text)
                with open(path, encoding="ascii") as f:
                    text = f.read()
            keys.append(load_public_key(text))
        except (OSError, ValueError) as e:
            s.checker.error(s.path / "vendor_keys" / str(i), f"cannot load the key: {e}")
    lim = s.section("limits")
    dl = d.limits
    seconds = number(1, 30 * 86400, "s")
    limits = Limits(
        check=lim.get("check", seconds, dl.check), reset=lim.get("reset", seconds, dl.reset),
        deliver=lim.get("deliver", seconds, dl.deliver),
        download=lim.get("download", seconds, dl.download),
        update=lim.get("update", seconds, dl.update), verify=lim.get("verify", seconds, dl.verify),
        poll_after=lim.get("poll_after", seconds, dl.poll_after),
        tries=lim.get("tries", integer(1, 20), dl.tries),
        attempts=lim.get("attempts", integer(1, 20), dl.attempts))
    lim.finish()
    out = OtaSettings(
        max_image=int(s.get("max_image_kb", integer(1, 64 * 1024), 1024)) * 1024,
        vendor_keys=tuple(keys),
        require_signature=s.get("require_signature", boolean, False),
        limits=limits, max_active=int(s.get("max_active", integer(1, 100_000), 200)))
    s.finish()
    if out.require_signature and not keys:
        s.checker.error(s.path / "require_signature", "true needs vendor_keys to check with")
    return out


def _looks_inline(text: str) -> bool:
    t = text.strip()
    return len(t) in (44, 64) and "/" not in t[:1] and "." not in t
