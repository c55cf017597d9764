"""Alibaba Cloud request signature V3, ``ACS3-HMAC-SHA256``: pure functions, no clock, no I/O.

The algorithm as Alibaba Cloud publishes it ("V3版本请求体&签名机制",
https://help.aliyun.com/zh/sdk/product-overview/v3-request-structure-and-signature; the
same steps in "签名机制", https://help.aliyun.com/zh/functioncompute/fc/developer-reference/
signature-mechanism):

1. ``CanonicalRequest = METHOD \\n CanonicalURI \\n CanonicalQueryString \\n
   CanonicalHeaders \\n SignedHeaders \\n HashedRequestPayload``; an RPC API's URI is
   ``/``; the query is sorted by name, names and values RFC 3986-encoded (as V2:
   ``%20``, ``%2A``, ``~`` kept); the headers are ``host``, ``content-type`` and every
   ``x-acs-*`` one, names lower-cased and sorted, values trimmed, each ``name:value\\n``;
   the payload hash is the lower-case hex SHA-256 of the body (of ``""`` without one),
   also sent as ``x-acs-content-sha256``;
2. ``StringToSign = "ACS3-HMAC-SHA256\\n" + hex(SHA256(CanonicalRequest))``;
3. ``Signature = hex(HMAC-SHA256(AccessKeySecret, StringToSign))``;
4. ``Authorization: ACS3-HMAC-SHA256 Credential=<AccessKeyId>,SignedHeaders=<names>,
   Signature=<hex>``.

The date (``x-acs-date``, ISO 8601 UTC to the second) and the nonce
(``x-acs-signature-nonce``) are inputs, so the published example is reproducible.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from plugins.sinks.sms_cloud.aliyun_sign import percent_encode, timestamp

ALGORITHM = "ACS3-HMAC-SHA256"

__all__ = ["ALGORITHM", "authorization", "canonical_headers", "canonical_query",
           "canonical_request", "sign", "signature", "string_to_sign", "timestamp"]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_query(params: Mapping[str, str]) -> str:
    pairs = sorted((percent_encode(k), percent_encode(v)) for k, v in params.items())
    return "&".join(f"{k}={v}" for k, v in pairs)


def canonical_uri(path: str) -> str:
    """Each ``/``-separated part encoded; ``/`` for an RPC API."""
    return "/".join(percent_encode(part) for part in (path or "/").split("/"))


def canonical_headers(headers: Mapping[str, str]) -> tuple[str, str]:
    """(CanonicalHeaders, SignedHeaders) of the headers that are signed."""
    signed = sorted((k.lower(), v.strip()) for k, v in headers.items()
                    if k.lower() in ("host", "content-type") or k.lower().startswith("x-acs-"))
    return ("".join(f"{k}:{v}\n" for k, v in signed), ";".join(k for k, _ in signed))


def canonical_request(method: str, path: str, query: Mapping[str, str],
                      headers: Mapping[str, str], payload_hash: str) -> str:
    text, names = canonical_headers(headers)
    return "\n".join([method.upper(), canonical_uri(path), canonical_query(query), text,
                      names, payload_hash])


def string_to_sign(canonical: str) -> str:
    return f"{ALGORITHM}\n{sha256_hex(canonical.encode('utf-8'))}"


def signature(secret: str, text: str) -> str:
    return hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()


def authorization(key_id: str, signed_headers: str, sig: str) -> str:
    return f"{ALGORITHM} Credential={key_id},SignedHeaders={signed_headers},Signature={sig}"


def sign(method: str, host: str, path: str, action: str, version: str,
         query: Mapping[str, str], body: bytes, key_id: str, secret: str, date: str,
         nonce: str, content_type: str | None = None) -> dict[str, str]:
    """Every header of the request (``Authorization`` included) for a call of ``action``
    with ``query`` in the URL and ``body`` as the payload."""
    headers = {"host": host, "x-acs-action": action, "x-acs-version": version,
               "x-acs-date": date, "x-acs-signature-nonce": nonce,
               "x-acs-content-sha256": sha256_hex(body)}
    if content_type:
        headers["content-type"] = content_type
    canonical = canonical_request(method, path, query, headers, headers["x-acs-content-sha256"])
    _, names = canonical_headers(headers)
    headers["Authorization"] = authorization(key_id, names,
                                             signature(secret, string_to_sign(canonical)))
    return headers
