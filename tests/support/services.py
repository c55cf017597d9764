"""Real services for tests and benchmarks, started on free loopback ports with temporary
data directories and stopped by the process we started (never by name).

VictoriaMetrics (Debian ``victoria-metrics``) accepts the InfluxDB v2 write API
(``/api/v2/write``) and reads back with ``/api/v1/export``: a field ``f`` of measurement
``m`` becomes the series ``m_f`` with the tags as labels, timestamps in milliseconds. New
points become visible about a second after they were written, so reads poll with a deadline.

InfluxDB keeps one value per series and timestamp (a second write of the same point replaces
the first); VictoriaMetrics keeps every sample unless ``-dedup.minScrapeInterval`` is set.
:class:`VictoriaMetrics` sets it to 1 ms by default, so the database behaves as InfluxDB
does for points a millisecond or more apart (a re-delivered point is merged away, whatever
its value), and :meth:`VictoriaMetrics.rows_inserted` still counts every row received
(re-deliveries included). With ``dedup=None`` every sample is kept and exported, so a test
can see each re-delivery: the fixture ``victoria`` takes ``{"dedup": None}`` through
indirect parametrization, and ``make_victoria(dedup=...)`` starts more than one.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

VM_BINARY = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"



def terminate(proc: subprocess.Popen | None, timeout: float,
              sig: int = signal.SIGTERM) -> None:
    """SIGTERM (or ``sig``) a service we started (so it can flush) and wait; SIGKILL if it
    hangs."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)

def free_udp_port() -> int:
    """A UDP port on loopback that nobody holds right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Looks:
    """One bounded wait for ``predicate``: :meth:`done` looks once, and says so when it
    held (its value in ``result``) or raises when ``timeout`` s of ``now`` have passed."""

    def __init__(self, predicate: Callable[[], Any], timeout: float, what: str,
                 now: Callable[[], float]) -> None:
        self.predicate, self.timeout, self.what, self.now = predicate, timeout, what, now
        self.deadline = now() + timeout
        self.result: Any = None

    def done(self) -> bool:
        self.result = self.predicate()
        if self.result:
            return True
        if self.now() >= self.deadline:
            raise TimeoutError(f"{self.what} not reached within {self.timeout} s")
        return False


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05,
               what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something true, at most ``timeout`` seconds."""
    looks = _Looks(predicate, timeout, what, time.monotonic)
    pause = threading.Event()
    while not looks.done():
        pause.wait(interval)
    return looks.result


async def async_wait_until(predicate: Callable[[], Any], timeout: float,
                           interval: float = 0.02, what: str = "condition") -> Any:
    """:func:`wait_until` for a coroutine: the event loop keeps running (the simulator or
    server under test lives on it) while ``predicate`` is checked every ``interval`` s, at
    most ``timeout`` s (of the loop's clock). A state that changes in another process, or
    in code with no event to wait on, is only seen by looking again; the one loop of looks
    lives here so that every test bounds it and says what it waited for."""
    looks = _Looks(predicate, timeout, what, asyncio.get_running_loop().time)
    while not looks.done():
        await asyncio.sleep(interval)
    return looks.result


class VictoriaMetrics:
    """One ``victoria-metrics`` process; :meth:`stop` and :meth:`start` again keep the data
    (same directory and port), which is what an outage looks like."""

    def __init__(self, data_dir: str, port: int | None = None, log_path: str | None = None,
                 dedup: str | None = "1ms"):
        self.data_dir = data_dir
        self.dedup = dedup
        self.port = port or free_port()
        self.log_path = log_path or os.path.join(os.path.dirname(data_dir.rstrip("/")),
                                                 f"victoria-metrics-{self.port}.log")
        self.proc: subprocess.Popen | None = None
        self._polls = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> VictoriaMetrics:
        if not os.path.exists(VM_BINARY):
            raise RuntimeError("victoria-metrics is not installed (make system-deps)")
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [VM_BINARY, f"-storageDataPath={self.data_dir}",
             f"-httpListenAddr=127.0.0.1:{self.port}", "-retentionPeriod=100y",
             "-loggerLevel=WARN",
             *([f"-dedup.minScrapeInterval={self.dedup}"] if self.dedup else [])],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        try:
            wait_until(self.healthy, timeout, what=f"victoria-metrics on port {self.port}")
        except TimeoutError:
            self.stop()
            raise
        return self

    def healthy(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"victoria-metrics exited; see {self.log_path}")
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                return r.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (VictoriaMetrics flushes what it accepted) and wait for the exit."""
        terminate(self.proc, timeout)
        self.proc = None

    def rows_inserted(self) -> int:
        """Rows received through the InfluxDB write API since this process started."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith('vm_rows_inserted_total{type="influx"}'):
                    return int(float(line.rsplit(" ", 1)[1]))
        return 0

    def export(self, match: str = '{__name__=~".+"}') -> list[dict]:
        """Every series matching ``match``: ``{"metric": {...}, "values": [...],
        "timestamps": [...]}`` (ms).

        VictoriaMetrics caches which series a filter selects, and a series created after a
        query was cached stays invisible to that same filter for about ten seconds. Every
        call therefore adds a label filter that matches everything but differs each time
        (``hubtest_poll!="<n>"``), so polling sees new series within the usual second.
        """
        self._polls += 1
        assert match.endswith("}"), "match must be a {...} selector"
        match = f'{match[:-1].rstrip()}{"," if match[:-1].strip(" {") else ""}' \
                f'hubtest_poll!="{self._polls}"}}'
        data = urllib.parse.urlencode({"match[]": match}).encode()
        with urllib.request.urlopen(self.url + "/api/v1/export", data=data, timeout=60) as r:
            return [json.loads(line) for line in r.read().splitlines() if line.strip()]

    def points(self, match: str = '{__name__=~".+"}') -> list[tuple[tuple, int, float]]:
        """Every stored sample as ``(series key, ms, value)``, duplicates included; the
        series key is the sorted labels with ``__name__``."""
        out = []
        for s in self.export(match):
            key = tuple(sorted(s["metric"].items()))
            out += [(key, ts, v) for ts, v in zip(s["timestamps"], s["values"], strict=True)]
        return out

    def settled_points(self, match: str = '{__name__=~".+"}') -> list[tuple[tuple, int, float]]:
        """Every sample accepted so far, re-deliveries included (unless dedup merged them).

        :meth:`wait_for_points` stops once enough samples are visible, so a duplicate still
        in VictoriaMetrics' in-memory buffers could go unseen. A restart flushes those
        buffers to disk (SIGTERM), and after it every accepted sample is searchable at once.
        """
        self.stop()
        self.start()
        return self.points(match)

    def wait_for_points(self, count: int, match: str = '{__name__=~".+"}',
                        timeout: float = 30.0) -> list[tuple[tuple, int, float]]:
        """Poll the export until at least ``count`` samples match (or the deadline)."""
        latest: list = []

        def enough() -> bool:
            latest[:] = self.points(match)
            return len(latest) >= count

        try:
            wait_until(enough, timeout, interval=0.2, what=f"{count} points in victoria-metrics")
        except TimeoutError:
            raise AssertionError(f"only {len(latest)} of {count} points arrived") from None
        return latest


@pytest.fixture
def victoria(tmp_path, request):
    """A VictoriaMetrics for one test (its own port and data directory), stopped after it.

    Deduplicating (as InfluxDB overwrites) unless the test asks for every sample with
    ``@pytest.mark.parametrize("victoria", [{"dedup": None}], indirect=True)``."""
    vm = VictoriaMetrics(str(tmp_path / "vm-data"), **getattr(request, "param", {}))
    vm.start()
    yield vm
    vm.stop()


@pytest.fixture
def make_victoria(tmp_path):
    """``make_victoria(dedup="1ms")`` -> one more started VictoriaMetrics (its own port and
    data directory); every one is stopped after the test."""
    started: list[VictoriaMetrics] = []

    def make(dedup: str | None = "1ms") -> VictoriaMetrics:
        vm = VictoriaMetrics(str(tmp_path / f"vm-data-{len(started) + 1}"), dedup=dedup)
        started.append(vm)
        return vm.start()

    yield make
    for vm in started:
        vm.stop()


# ---------------------------------------------------------------------------- Mosquitto

MOSQUITTO_BINARY = (shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
                    or "/usr/sbin/mosquitto")
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class TestPki:
    """A CA and certificates made at test time with ``cryptography`` (P-256 keys), written as
    PEM files under ``directory``: ``ca.pem``, and ``<name>.pem`` / ``<name>.key`` per
    :meth:`issue`."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, directory: str) -> None:
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self._x509, self._hashes, self._ser, self._ec, self._oid = (
            x509, hashes, serialization, ec, NameOID)
        self._now = datetime.datetime.now(datetime.UTC)
        self._day = datetime.timedelta(days=1)
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hub test CA")])
        self.ca_name = name
        self.ca_cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self.ca_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(self._now - self._day).not_valid_after(self._now + 30 * self._day)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(self.ca_key, hashes.SHA256()))
        self.ca_path = os.path.join(directory, "ca.pem")
        with open(self.ca_path, "wb") as f:
            f.write(self.ca_cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, common_name: str, server: bool = False) -> tuple[str, str]:
        """A certificate for ``common_name`` signed by the CA; returns (cert path, key path).
        A server certificate names ``localhost`` and ``127.0.0.1``."""
        import ipaddress

        x509, oid = self._x509, self._oid
        key = self._ec.generate_private_key(self._ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(oid.COMMON_NAME, common_name)]))
            .issuer_name(self.ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._now - self._day).not_valid_after(self._now + 30 * self._day)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(
                [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH if server
                 else x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"),
                 x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        cert = builder.sign(self.ca_key, self._hashes.SHA256())
        cert_path = os.path.join(self.dir, f"{name}.pem")
        key_path = os.path.join(self.dir, f"{name}.key")
        with open(cert_path, "wb") as f:
            f.write(cert.public_bytes(self._ser.Encoding.PEM))
        with open(key_path, "wb") as f:
            f.write(key.private_bytes(self._ser.Encoding.PEM,
                                      self._ser.PrivateFormat.TraditionalOpenSSL,
                                      self._ser.NoEncryption()))
        os.chmod(key_path, 0o600)
        return cert_path, key_path


class Mosquitto:
    """One ``mosquitto`` with a plain listener (password file) and a TLS listener that asks
    for a client certificate (its common name is the user name), on free loopback ports.

    ``max_queued_messages 0``: Mosquitto's default of 1,000 queued QoS 1 messages per client
    silently drops the rest when a subscriber falls behind. :meth:`stop` and :meth:`start`
    again keep the ports, which is what a broker restart looks like; with
    ``persistence=True`` sessions and queued messages survive it.
    """

    def __init__(self, directory: str, users: dict[str, str] | None = None,
                 persistence: bool = False) -> None:
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.users = users if users is not None else {"hub": "hub-secret", "dev": "dev-secret"}
        self.persistence = persistence
        self.port = free_port()
        self.tls_port = free_port()
        self.pki = TestPki(os.path.join(directory, "pki"))
        self.server_cert, self.server_key = self.pki.issue("server", "localhost", server=True)
        self.conf_path = os.path.join(directory, "mosquitto.conf")
        self.log_path = os.path.join(directory, "mosquitto.log")
        self.proc: subprocess.Popen | None = None
        self._write_config()

    def _write_config(self) -> None:
        passwd = os.path.join(self.dir, "passwd")
        open(passwd, "w").close()
        for user, password in self.users.items():
            subprocess.run([MOSQUITTO_PASSWD, "-b", passwd, user, password], check=True,
                           capture_output=True)
        os.chmod(passwd, 0o600)
        lines = [
            # started as root, mosquitto would switch to user "mosquitto", which cannot
            # read our 0600 password and key files
            f"user {getpass.getuser()}",
            "per_listener_settings true",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.dir}/",
            "autosave_interval 0",
            "max_queued_messages 0",
            "max_inflight_messages 0",
            f"log_dest file {self.log_path}",  # flushed per line, unlike stdout to a file
            "log_type error",
            "log_type warning",
            "log_type notice",
            "connection_messages true",
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous false",
            f"password_file {passwd}",
            f"listener {self.tls_port} 127.0.0.1",
            f"cafile {self.pki.ca_path}",
            f"certfile {self.server_cert}",
            f"keyfile {self.server_key}",
            "require_certificate true",
            "use_identity_as_username true",
            "allow_anonymous false",
        ]
        with open(self.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self, timeout: float = 20.0) -> Mosquitto:
        if not os.path.exists(MOSQUITTO_BINARY):
            raise RuntimeError("mosquitto is not installed (make system-deps)")
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen([MOSQUITTO_BINARY, "-c", self.conf_path], stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()

        def up() -> bool:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited; see {self.log_path}")
            return port_open(self.port) and port_open(self.tls_port)

        try:
            wait_until(up, timeout, what=f"mosquitto on ports {self.port}, {self.tls_port}")
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (with persistence, Mosquitto writes its database) and wait for the exit."""
        terminate(self.proc, timeout)
        self.proc = None

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()


@pytest.fixture
def mosquitto(tmp_path):
    """A Mosquitto for one test (users ``hub``/``hub-secret`` and ``dev``/``dev-secret`` on
    ``.port``; client certificates on ``.tls_port``), stopped after it."""
    broker = Mosquitto(str(tmp_path / "mosquitto"))
    broker.start()
    yield broker
    broker.stop()
