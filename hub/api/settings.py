"""The ``api:`` section of the configuration (checked by ``hub check`` like every other).

::

    api:
      enabled: true
      host: 127.0.0.1          # the embedded default listens on loopback only
      port: 8080               # 0: any free port (tests)
      tls: {cert: api.crt, key: api.key}   # optional; files relative to the config file
      store: var/platform.sqlite           # default <state_dir>/platform.sqlite
      # or {backend: postgresql, dsn: ..., password_file: ...}: hub.store.settings
      token_ttl: 3600          # s a bearer token is valid
      refresh_ttl: 2592000     # s its refresh token is valid (30 days)
      max_body_kb: 1024        # larger request bodies are refused (413)
      lockout: {failures: 5, minutes: 15}  # per account
      address_throttle: {failures: 20, minutes: 15}  # per client address
      notify: {channels: {...}, retry: {...}}  # alarm notification channels (hub.alarmdesk)
      console: {enabled: true, tile_url: ..., tile_attribution: ...}  # hub.console.settings
      ota: {max_image_kb: 1024, vendor_keys: [...]}   # firmware updates (hub.ota.settings)
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field

from hub.alarmdesk.settings import NotifySettings, parse_notify
from hub.console.settings import ConsoleSettings, parse_console
from hub.ota.settings import OtaSettings, parse_ota
from hub.store.settings import StoreSettings, parse_store
from hub.validate import Section, boolean, integer, number, string


@dataclass(frozen=True)
class ApiSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080
    tls_cert: str | None = None
    tls_key: str | None = None
    store_path: str = "var/platform.sqlite"  # the SQLite file ("" on PostgreSQL)
    #: which platform store (SQLite, or PostgreSQL in cluster mode)
    store: StoreSettings = field(default_factory=StoreSettings)
    token_ttl: float = 3600.0
    refresh_ttl: float = 30 * 86400.0
    max_body: int = 1024 * 1024
    lockout_failures: int = 5
    lockout_seconds: float = 15 * 60.0
    address_failures: int = 20
    address_window: float = 15 * 60.0
    #: channels of the alarm notification policies (hub.alarmdesk.settings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    ota: OtaSettings = field(default_factory=OtaSettings)  # hub.ota.settings

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"


def parse_api(top: Section, state_dir: str, base: str) -> ApiSettings | None:
    """``None`` when the file has no ``api:`` section (the API is then off)."""
    if "api" not in top:
        top.section("api")  # mark it read
        return None
    from hub.store import store_path

    s = top.section("api")
    enabled = s.get("enabled", boolean, True)
    host = s.get("host", string(), "127.0.0.1")
    port = s.get("port", integer(0, 65535), 8080)
    store = parse_store(s, "store", store_path(state_dir), base)
    tls = s.section("tls")
    cert = tls.get("cert", string(), None)
    key = tls.get("key", string(), None)
    tls.finish()
    if cert is not None and not os.path.isabs(cert):
        cert = os.path.join(base, cert)
    if key is not None and not os.path.isabs(key):
        key = os.path.join(base, key)
    if (cert is None) != (key is None):
        s.checker.error(tls.path, "give both cert and key (PEM files), or neither")
    elif cert is not None and key is not None:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as e:
            s.checker.error(tls.path, f"cannot load the certificate and key: {e}")
    lock = s.section("lockout")
    throttle = s.section("address_throttle")
    out = ApiSettings(
        enabled=enabled, host=host, port=port, tls_cert=cert, tls_key=key, store_path=store.path,
        store=store,
        token_ttl=s.get("token_ttl", number(60, 30 * 86400, "s"), 3600.0),
        refresh_ttl=s.get("refresh_ttl", number(60, 365 * 86400, "s"), 30 * 86400.0),
        max_body=int(s.get("max_body_kb", integer(1, 64 * 1024), 1024)) * 1024,
        lockout_failures=lock.get("failures", integer(1, 1000), 5),
        lockout_seconds=lock.get("minutes", number(0.1, 7 * 1440), 15) * 60,
        address_failures=throttle.get("failures", integer(1, 100_000), 20),
        address_window=throttle.get("minutes", number(0.1, 1440), 15) * 60,
        notify=parse_notify(s),
        console=parse_console(s),
        ota=parse_ota(s, base),
    )
    lock.finish()
    throttle.finish()
    s.finish()
    return out
