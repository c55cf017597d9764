"""Loopback stand-ins for the SMS providers: stdlib HTTP servers in a thread.

Each peer checks every request the way the provider does — the signature recomputed here
from the providers' published algorithm descriptions, written independently of
``plugins.sinks.sms_cloud`` (its own percent-encoding, its own canonical strings), and the
required parameters present — and answers with the bodies the providers document. What it
saw is kept in ``requests``; what it objected to in ``problems`` (a test asserts it is
empty). ``answer`` decides the reply; the default is the documented success.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

#: an answer that never comes: the peer holds the request this long, then closes
HANG = "hang"
#: the connection is closed without an answer
DROP = "drop"


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    params: dict[str, Any] = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _any(self) -> None:
        peer: LoopbackPeer = self.server.peer  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        seen = Seen(self.command, parts.path, dict(parse_qsl(parts.query, True)),
                    {k.lower(): v for k, v in self.headers.items()}, body)
        with peer.lock:
            peer.requests.append(seen)
        reply = peer.handle(seen)
        if reply == HANG:
            # hold the request unanswered (the client must time out) until the test ends
            peer.stopping.wait(peer.hang_seconds)
            self.close_connection = True
            return
        if reply == DROP:
            self.close_connection = True
            return
        status, payload = reply
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = _any


class LoopbackPeer:
    """The server; subclasses check requests and answer as their provider does."""

    hang_seconds = 3.0

    def __init__(self, answer: Callable[[Seen], Any] | None = None) -> None:
        self.requests: list[Seen] = []
        self.problems: list[str] = []
        self.lock = threading.Lock()
        self.answer = answer
        self.stopping = threading.Event()  # releases requests held by HANG
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.peer = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def __enter__(self) -> LoopbackPeer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def problem(self, text: str) -> None:
        with self.lock:
            self.problems.append(text)

    def handle(self, seen: Seen) -> Any:
        return self.answer(seen) if self.answer else (200, {})


# ------------------------------------------------------------------------------ Alibaba


def rfc3986(text: str) -> str:
    """Percent-encoding as Alibaba's RPC signature description states it: UTF-8 bytes;
    A-Z a-z 0-9 '-' '_' '.' '~' unchanged; every other byte as %XX, upper-case hex."""
    keep = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
    return "".join(chr(b) if b in keep else f"%{b:02X}" for b in text.encode("utf-8"))


def aliyun_expected_signature(method: str, params: dict[str, str], secret: str) -> str:
    pairs = sorted((rfc3986(k), rfc3986(v)) for k, v in params.items() if k != "Signature")
    query = "&".join(k + "=" + v for k, v in pairs)
    to_sign = method + "&" + rfc3986("/") + "&" + rfc3986(query)
    mac = hmac.new((secret + "&").encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def aliyun_ok(seen: Seen) -> tuple[int, dict]:
    return 200, {"Message": "OK", "RequestId": str(uuid.uuid4()).upper(), "Code": "OK",
                 "BizId": f"9006197469364984{len(seen.params.get('PhoneNumbers', ''))}^0"}


def aliyun_error(code: str, message: str, status: int = 200) -> tuple[int, dict]:
    return status, {"Message": message, "RequestId": str(uuid.uuid4()).upper(), "Code": code}


def acs3_expected(seen: Seen, secret: str) -> tuple[str, str]:
    """(expected Authorization, problem or "") of a V3-signed request as it arrived,
    following "V3版本请求体&签名机制": every ``x-acs-*`` header, ``host`` and
    ``content-type`` signed; the payload hash checked against the body."""
    h = seen.headers
    auth = h.get("authorization", "")
    m = re.fullmatch(r"ACS3-HMAC-SHA256 Credential=([^,]+),SignedHeaders=([a-z0-9;-]+),"
                     r"Signature=([0-9a-f]{64})", auth)
    if not m:
        return "", f"Authorization {auth!r} is malformed"
    key_id, signed, _ = m.groups()
    names = signed.split(";")
    must = {n for n in h if n.startswith("x-acs-") or n in ("host", "content-type")}
    if names != sorted(names) or set(names) != must:
        return "", f"SignedHeaders {signed!r}, expected {';'.join(sorted(must))}"
    for name in ("x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce",
                 "x-acs-content-sha256"):
        if not h.get(name):
            return "", f"{name} missing"
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", h["x-acs-date"]):
        return "", f"x-acs-date {h['x-acs-date']!r} is not ISO 8601 UTC"
    if h["x-acs-content-sha256"] != hashlib.sha256(seen.body).hexdigest():
        return "", "x-acs-content-sha256 is not the body's SHA-256"
    query = "&".join(k + "=" + v for k, v in sorted(
        (rfc3986(k), rfc3986(v)) for k, v in seen.query.items()))
    path = "/".join(rfc3986(p) for p in seen.path.split("/"))
    canonical = "\n".join([seen.method, path, query,
                           "".join(f"{n}:{h[n].strip()}\n" for n in names), signed,
                           h["x-acs-content-sha256"]])
    to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical.encode()).hexdigest()
    sig = hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    return (f"ACS3-HMAC-SHA256 Credential={key_id},SignedHeaders={signed},"
            f"Signature={sig}"), ""


class AliyunPeer(LoopbackPeer):
    """Dysmsapi ``SendSms``, version 2017-05-25: V3-signed (``ACS3-HMAC-SHA256`` header,
    parameters in the query) or V2 (POST form or GET query). ``signatures`` counts which
    was used."""

    action, version = "SendSms", "2017-05-25"

    def __init__(self, key_id: str, secret: str,
                 answer: Callable[[Seen], Any] | None = None) -> None:
        super().__init__(answer)
        self.key_id, self.secret = key_id, secret
        self.nonces: set[str] = set()
        self.signatures: list[str] = []

    def handle(self, seen: Seen) -> Any:
        if seen.headers.get("authorization", "").startswith("ACS3-"):
            trouble = self.check_v3(seen)
        else:
            trouble = self.check_v2(seen)
        if trouble is not None:
            return trouble
        return self.check_api(seen)

    def check_v3(self, seen: Seen) -> Any:
        self.signatures.append("v3")
        seen.params = dict(seen.query)
        h = seen.headers
        for name, value in (("x-acs-action", self.action), ("x-acs-version", self.version)):
            if h.get(name) != value:
                self.problem(f"{name} is {h.get(name)!r}, expected {value!r}")
                return aliyun_error("MissingParameter", f"{name} is mandatory", 400)
        expected, trouble = acs3_expected(seen, self.secret)
        if trouble:
            self.problem(trouble)
            return aliyun_error("IncompleteSignature", trouble, 400)
        if not expected.startswith(f"ACS3-HMAC-SHA256 Credential={self.key_id},"):
            self.problem("unknown AccessKeyId")
            return aliyun_error("InvalidAccessKeyId.NotFound", "Specified access key is "
                                "not found.", 404)
        nonce = h["x-acs-signature-nonce"]
        if nonce in self.nonces:
            self.problem("x-acs-signature-nonce used twice")
            return aliyun_error("SignatureNonceUsed", "Specified signature nonce was used "
                                "already.", 400)
        self.nonces.add(nonce)
        if h.get("authorization") != expected:
            self.problem(f"Authorization {h.get('authorization')!r} != {expected!r}")
            return aliyun_error("SignatureDoesNotMatch", "Specified signature is not "
                                "matched with our calculation.", 400)
        return None

    def check_v2(self, seen: Seen) -> Any:
        self.signatures.append("v2")
        if seen.method == "POST":
            params = dict(parse_qsl(seen.body.decode("ascii"), keep_blank_values=True))
        else:
            params = dict(seen.query)
        seen.params = params
        required = {"Format": "JSON", "Version": self.version, "SignatureMethod": "HMAC-SHA1",
                    "SignatureVersion": "1.0", "Action": self.action,
                    "AccessKeyId": self.key_id}
        for name, value in required.items():
            if params.get(name) != value:
                self.problem(f"{name} is {params.get(name)!r}, expected {value!r}")
                return aliyun_error("MissingParameter", f"{name} is mandatory", 400)
        for name in ("RegionId", "SignatureNonce", "Signature"):
            if not params.get(name):
                self.problem(f"{name} missing")
                return aliyun_error(f"Missing{name}", f"{name} is mandatory", 400)
        if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", params.get("Timestamp", "")):
            self.problem(f"Timestamp {params.get('Timestamp')!r} is not ISO 8601 UTC")
            return aliyun_error("InvalidTimeStamp.Format", "bad Timestamp", 400)
        if params["SignatureNonce"] in self.nonces:
            self.problem("SignatureNonce used twice")
            return aliyun_error("SignatureNonceUsed", "Specified signature nonce was used "
                                "already.", 400)
        self.nonces.add(params["SignatureNonce"])
        expected = aliyun_expected_signature(seen.method, params, self.secret)
        if params["Signature"] != expected:
            self.problem(f"Signature {params['Signature']!r} != {expected!r}")
            return aliyun_error("SignatureDoesNotMatch", "Specified signature is not "
                                "matched with our calculation.", 400)
        return None

    def check_api(self, seen: Seen) -> Any:
        params = seen.params
        for name in ("PhoneNumbers", "SignName", "TemplateCode"):
            if not params.get(name):
                self.problem(f"{name} missing")
                return aliyun_error(f"Missing{name}", f"{name} is mandatory", 400)
        if not all(re.fullmatch(r"\d{5,15}", p) for p in params["PhoneNumbers"].split(",")):
            self.problem(f"PhoneNumbers {params['PhoneNumbers']!r} (digits, no +)")
        if "TemplateParam" in params:
            doc = json.loads(params["TemplateParam"])
            if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
                self.problem(f"TemplateParam {params['TemplateParam']!r}")
        return self.answer(seen) if self.answer else aliyun_ok(seen)


class AliyunVoicePeer(AliyunPeer):
    """Dyvmsapi ``SingleCallByTts``, version 2017-05-25, V3-signed only (as the hub sends
    it), checked against "SingleCallByTts - 发送语音验证码或文本转语音类型的语音通知"
    (https://help.aliyun.com/document_detail/393519.html): one ``CalledNumber`` (a
    mainland mobile or fixed number, no +86), ``TtsCode`` ``TTS_…``, ``TtsParam`` a JSON
    object, ``PlayTimes`` 1 to 3, ``OutId`` at most 15 bytes. It also applies the
    provider's per-number flow control (1 a minute, 5 an hour, 20 in 24 hours; a failed
    call counts too) on its own clock ``now`` and answers ``isv.BUSINESS_LIMIT_CONTROL``
    past it, so a test sees whether the hub stayed within the limits."""

    action, version = "SingleCallByTts", "2017-05-25"

    def __init__(self, key_id: str, secret: str, answer: Callable[[Seen], Any] | None = None,
                 now: Callable[[], float] | None = None) -> None:
        super().__init__(key_id, secret, answer)
        import time

        self.now = now or time.time
        self.calls: dict[str, list[float]] = {}
        self.limited: list[str] = []

    def handle(self, seen: Seen) -> Any:
        if not seen.headers.get("authorization", "").startswith("ACS3-"):
            self.problem("SingleCallByTts is sent V3-signed")
            return aliyun_error("IncompleteSignature", "V3 expected", 400)
        trouble = self.check_v3(seen)
        if trouble is not None:
            return trouble
        p = seen.params
        number = p.get("CalledNumber", "")
        if not re.fullmatch(r"1\d{10}|0\d{9,11}", number):
            self.problem(f"CalledNumber {number!r}")
            return aliyun_error("isv.MOBILE_NUMBER_ILLEGAL", "invalid number")
        if not re.fullmatch(r"TTS_\d+", p.get("TtsCode", "")):
            self.problem(f"TtsCode {p.get('TtsCode')!r}")
            return aliyun_error("isv.TTS_TEMPLATE_ILLEGAL", "template")
        if "TtsParam" in p:
            doc = json.loads(p["TtsParam"])
            if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
                self.problem(f"TtsParam {p['TtsParam']!r}")
        if "PlayTimes" in p and p["PlayTimes"] not in ("1", "2", "3"):
            self.problem(f"PlayTimes {p['PlayTimes']!r}")
        if len(p.get("OutId", "").encode()) > 15:
            self.problem(f"OutId {p['OutId']!r} longer than 15 bytes")
        extra = set(p) - {"CalledNumber", "CalledShowNumber", "TtsCode", "TtsParam",
                          "PlayTimes", "Volume", "Speed", "OutId"}
        if extra:
            self.problem(f"unknown parameters {sorted(extra)}")
        now = self.now()
        with self.lock:
            past = [t for t in self.calls.get(number, []) if t > now - 86400]
            over = (sum(t > now - 60 for t in past) >= 1 or sum(t > now - 3600 for t in past)
                    >= 5 or len(past) >= 20)
            past.append(now)
            self.calls[number] = past
        if over:
            self.limited.append(number)
            return aliyun_error("isv.BUSINESS_LIMIT_CONTROL", "触发号码流控")
        if self.answer:
            return self.answer(seen)
        return 200, {"RequestId": str(uuid.uuid4()).upper(), "Code": "OK", "Message": "OK",
                     "CallId": f"116012354148^{1028137 + len(self.requests)}"}


# ------------------------------------------------------------------------------ Tencent


def tc3_expected(seen: Seen, secret_key: str) -> tuple[str, str, str]:
    """(expected Authorization, credential date, problem or "") from the request as it
    arrived, following "签名方法 v3"."""
    auth = seen.headers.get("authorization", "")
    m = re.fullmatch(r"TC3-HMAC-SHA256 Credential=([^/]+)/(\d{4}-\d\d-\d\d)/([a-z]+)/"
                     r"tc3_request, SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})", auth)
    if not m:
        return "", "", f"Authorization {auth!r} is malformed"
    secret_id, date, service, signed, _ = m.groups()
    names = signed.split(";")
    if names != sorted(names) or not {"content-type", "host"} <= set(names):
        return "", date, f"SignedHeaders {signed!r}"
    canonical_headers = "".join(f"{n}:{seen.headers.get(n, '').strip().lower()}\n"
                                for n in names)
    # a POST's canonical query string is empty
    canonical = "\n".join([seen.method, "/", "", canonical_headers, signed,
                           hashlib.sha256(seen.body).hexdigest()])
    ts = seen.headers.get("x-tc-timestamp", "0")
    to_sign = "\n".join(["TC3-HMAC-SHA256", ts, f"{date}/{service}/tc3_request",
                         hashlib.sha256(canonical.encode()).hexdigest()])

    def mac(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    k = mac(mac(mac(("TC3" + secret_key).encode(), date), service), "tc3_request")
    sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    return (f"TC3-HMAC-SHA256 Credential={secret_id}/{date}/{service}/tc3_request, "
            f"SignedHeaders={signed}, Signature={sig}"), date, ""


def tencent_error(code: str, message: str) -> tuple[int, dict]:
    return 200, {"Response": {"Error": {"Code": code, "Message": message},
                              "RequestId": str(uuid.uuid4())}}


class TencentPeer(LoopbackPeer):
    """SMS API 3.0 ``SendSms``, version 2021-01-11. ``codes`` maps a number to the
    ``Code`` of its SendStatusSet entry (default ``Ok``)."""

    def __init__(self, secret_id: str, secret_key: str, app_id: str,
                 codes: dict[str, str] | None = None,
                 answer: Callable[[Seen], Any] | None = None) -> None:
        super().__init__(answer)
        self.secret_id, self.secret_key, self.app_id = secret_id, secret_key, app_id
        self.codes = codes or {}

    def handle(self, seen: Seen) -> Any:
        h = seen.headers
        for name, value in (("x-tc-action", "SendSms"), ("x-tc-version", "2021-01-11")):
            if h.get(name) != value:
                self.problem(f"{name} is {h.get(name)!r}")
                return tencent_error("InvalidAction", f"{name} is wrong")
        if not h.get("x-tc-region"):
            self.problem("X-TC-Region missing")
        expected, date, trouble = tc3_expected(seen, self.secret_key)
        if trouble:
            self.problem(trouble)
            return tencent_error("AuthFailure.InvalidAuthorization", trouble)
        ts = int(h.get("x-tc-timestamp", "0"))
        if datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d") != date:
            self.problem(f"credential date {date} is not the UTC date of {ts}")
            return tencent_error("AuthFailure.SignatureFailure", "date")
        if not expected.startswith(f"TC3-HMAC-SHA256 Credential={self.secret_id}/"):
            self.problem("unknown SecretId")
            return tencent_error("AuthFailure.SecretIdNotFound", "SecretId")
        if h.get("authorization") != expected:
            self.problem(f"Authorization {h.get('authorization')!r} != {expected!r}")
            return tencent_error("AuthFailure.SignatureFailure", "The provided credentials "
                                 "could not be validated. Please check your signature is "
                                 "correct.")
        doc = json.loads(seen.body)
        seen.params = doc
        phones = doc.get("PhoneNumberSet")
        if not (isinstance(phones, list) and phones
                and all(re.fullmatch(r"\+\d{6,15}", p) for p in phones)):
            self.problem(f"PhoneNumberSet {phones!r}")
            return tencent_error("InvalidParameterValue.IncorrectPhoneNumber", "phones")
        for name in ("SmsSdkAppId", "SignName", "TemplateId"):
            if not isinstance(doc.get(name), str) or not doc[name]:
                self.problem(f"{name} missing")
                return tencent_error("MissingParameter", name)
        if doc["SmsSdkAppId"] != self.app_id:
            return tencent_error("InvalidParameterValue.SdkAppIdNotExist", "SdkAppId")
        tps = doc.get("TemplateParamSet", [])
        if not isinstance(tps, list) or not all(isinstance(x, str) for x in tps):
            self.problem(f"TemplateParamSet {tps!r}")
        if self.answer:
            return self.answer(seen)
        statuses = []
        for i, phone in enumerate(phones):
            code = self.codes.get(phone, "Ok")
            statuses.append({
                "SerialNo": f"5000:10457106691570536578494996{i:02d}" if code == "Ok" else "",
                "PhoneNumber": phone, "Fee": 1 if code == "Ok" else 0,
                "SessionContext": doc.get("SessionContext", ""), "Code": code,
                "Message": "send success" if code == "Ok" else code, "IsoCode": "CN"})
        return 200, {"Response": {"SendStatusSet": statuses,
                                  "RequestId": "a0aabda6-cf91-4f3e-a81f-9198114a2279"}}
