"""The API over TLS (api.tls), with a certificate made for the test."""

from __future__ import annotations

import datetime
import ipaddress
import ssl

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.api_hub import ROOT_PASSWORD, start_api_hub


def make_cert(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "api.crt", tmp_path / "api.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_api_over_tls(tmp_path):
    cert, key = make_cert(tmp_path)
    hub = start_api_hub(tmp_path, api={"tls": {"cert": "api.crt", "key": "api.key"}})
    try:
        assert hub.url.startswith("https://")
        trust = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=hub.url, verify=trust, timeout=30) as c:
            r = c.post("/api/auth/login", json={"username": "root", "password": ROOT_PASSWORD})
            assert r.status_code == 200
            assert r.headers["strict-transport-security"].startswith("max-age=")
            token = r.json()["access_token"]
            me = c.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
            assert me.json()["name"] == "root"
        plain = httpx.Client(base_url=hub.url.replace("https", "http"), timeout=5)
        try:
            plain.get("/healthz")
        except httpx.HTTPError:
            pass  # a plain-HTTP client gets no answer from a TLS port
        else:
            raise AssertionError("the TLS port answered plain HTTP")
        finally:
            plain.close()
    finally:
        hub.stop()
