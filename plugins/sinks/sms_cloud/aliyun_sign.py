"""Alibaba Cloud RPC signature, version 1.0 (HMAC-SHA1): pure functions, no clock, no I/O.

The algorithm, as Alibaba Cloud publishes it ("RPC 签名机制"; for Dysmsapi, "HTTP 协议及签名",
https://help.aliyun.com/document_detail/56189.html):

1. percent-encode every parameter name and value (UTF-8; RFC 3986 unreserved characters
   ``A-Z a-z 0-9 - _ . ~`` stay, space is ``%20``, ``*`` is ``%2A``, ``~`` stays);
2. sort by encoded name and join as ``name=value`` with ``&`` (the canonicalized query);
3. ``StringToSign = METHOD + "&" + encode("/") + "&" + encode(canonicalized query)``;
4. ``Signature = Base64(HMAC-SHA1(AccessKeySecret + "&", StringToSign))``.

The timestamp and the nonce are parameters like any other, so callers inject them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as the RPC signature wants it (``quote`` already leaves ``~``)."""
    return quote(value, safe="-_.~")


def canonical_query(params: Mapping[str, str]) -> str:
    """The sorted, encoded ``name=value&...`` string (``Signature`` itself excluded)."""
    pairs = sorted((percent_encode(k), percent_encode(v))
                   for k, v in params.items() if k != "Signature")
    return "&".join(f"{k}={v}" for k, v in pairs)


def string_to_sign(method: str, params: Mapping[str, str]) -> str:
    return f"{method.upper()}&{percent_encode('/')}&{percent_encode(canonical_query(params))}"


def signature(secret: str, text: str) -> str:
    digest = hmac.new(f"{secret}&".encode(), text.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def sign(method: str, params: Mapping[str, str], secret: str) -> dict[str, str]:
    """``params`` plus their ``Signature``."""
    return {**params, "Signature": signature(secret, string_to_sign(method, params))}


def timestamp(epoch: float) -> str:
    """ISO 8601 UTC to the second, the form the RPC ``Timestamp`` parameter takes."""
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
