"""The ``api.console:`` section: the web console served with the API (README "Web console").

::

    api:
      console:
        enabled: true           # serve the console under / (default)
        tile_url: "https://t{s}.tianditu.gov.cn/vec_w/wmts?...&tk=KEY"   # or an on-premises
                                # tile server; none: projects on a plain coordinate canvas
        tile_attribution: "天地图"
        tile_subdomains: "01234567"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from hub.validate import boolean, string

if TYPE_CHECKING:
    from hub.validate import Section


@dataclass(frozen=True)
class ConsoleSettings:
    enabled: bool = True
    tile_url: str | None = None
    tile_attribution: str = ""
    tile_subdomains: str = "abc"

    @property
    def tile_origin(self) -> str | None:
        """The tile server's origin (scheme://host[:port]) the pages' CSP must allow, with
        ``{s}`` subdomains widened to a wildcard."""
        if not self.tile_url:
            return None
        parts = urlsplit(self.tile_url)
        if not parts.scheme:
            return None  # a path on the hub itself: 'self' covers it
        host = parts.netloc
        if "{s}" in host:
            host = "*." + host.split(".", 1)[1] if "." in host else host
        return f"{parts.scheme}://{host}"


def parse_console(api: Section) -> ConsoleSettings:
    s = api.section("console")
    enabled = s.get("enabled", boolean, True)
    url = s.get("tile_url", string(r"(https?://|/)\S+", "an http(s):// or /path URL"), None)
    out = ConsoleSettings(enabled=enabled, tile_url=url,
                          tile_attribution=s.get("tile_attribution", string(), ""),
                          tile_subdomains=s.get("tile_subdomains", string(), "abc"))
    s.finish()
    return out
