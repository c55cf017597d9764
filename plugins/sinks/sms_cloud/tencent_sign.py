"""Tencent Cloud API 3.0 signature v3 (TC3-HMAC-SHA256): pure functions, no clock, no I/O.

The algorithm, as Tencent Cloud publishes it ("签名方法 v3",
https://cloud.tencent.com/document/api/213/30654):

1. CanonicalRequest = method, URI ``/``, query (empty for POST), the signed headers as
   ``name:value\\n`` (names and values lower-cased, trimmed, sorted by name), an empty line,
   the signed header names joined by ``;``, and hex(SHA-256(payload)) — joined by ``\\n``;
2. StringToSign = ``TC3-HMAC-SHA256``, the timestamp, ``<UTC date>/<service>/tc3_request``,
   hex(SHA-256(CanonicalRequest)) — joined by ``\\n``;
3. SecretDate = HMAC("TC3" + SecretKey, date); SecretService = HMAC(SecretDate, service);
   SecretSigning = HMAC(SecretService, "tc3_request");
   Signature = hex(HMAC(SecretSigning, StringToSign));
4. Authorization = ``TC3-HMAC-SHA256 Credential=<SecretId>/<scope>, SignedHeaders=<names>,
   Signature=<signature>``.

The date in the scope is the UTC date of the timestamp: a local (UTC+8) date fails every
request made between midnight and 08:00 Beijing time, which the documentation warns about.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime

ALGORITHM = "TC3-HMAC-SHA256"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def utc_date(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def credential_scope(timestamp: int, service: str) -> str:
    return f"{utc_date(timestamp)}/{service}/tc3_request"


def canonical_headers(headers: Mapping[str, str]) -> tuple[str, str]:
    """(``CanonicalHeaders``, ``SignedHeaders``) of the headers that take part."""
    items = sorted((k.strip().lower(), v.strip().lower()) for k, v in headers.items())
    return "".join(f"{k}:{v}\n" for k, v in items), ";".join(k for k, _ in items)


def canonical_request(method: str, headers: Mapping[str, str], payload: bytes,
                      query: str = "") -> tuple[str, str]:
    """(``CanonicalRequest``, ``SignedHeaders``)."""
    canon, signed = canonical_headers(headers)
    text = "\n".join([method.upper(), "/", query, canon, signed, sha256_hex(payload)])
    return text, signed


def string_to_sign(timestamp: int, service: str, canonical: str) -> str:
    return "\n".join([ALGORITHM, str(timestamp), credential_scope(timestamp, service),
                      sha256_hex(canonical.encode())])


def derivation(secret_key: str, timestamp: int, service: str) -> tuple[bytes, bytes, bytes]:
    """(SecretDate, SecretService, SecretSigning): the steps the documentation prints."""
    secret_date = _hmac(f"TC3{secret_key}".encode(), utc_date(timestamp))
    secret_service = _hmac(secret_date, service)
    return secret_date, secret_service, _hmac(secret_service, "tc3_request")


def signing_key(secret_key: str, timestamp: int, service: str) -> bytes:
    """SecretSigning, derived from the secret key through the date and the service."""
    return derivation(secret_key, timestamp, service)[2]


def signature(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def authorization(secret_id: str, timestamp: int, service: str, signed_headers: str,
                  sig: str) -> str:
    return (f"{ALGORITHM} Credential={secret_id}/{credential_scope(timestamp, service)}, "
            f"SignedHeaders={signed_headers}, Signature={sig}")


def sign(secret_id: str, secret_key: str, service: str, timestamp: int,
         headers: Mapping[str, str], payload: bytes, method: str = "POST") -> str:
    """The ``Authorization`` value for a request whose signed headers are ``headers``."""
    canonical, signed = canonical_request(method, headers, payload)
    text = string_to_sign(timestamp, service, canonical)
    return authorization(secret_id, timestamp, service, signed,
                         signature(signing_key(secret_key, timestamp, service), text))
