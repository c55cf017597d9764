"""Alibaba Cloud V3 signature (``ACS3-HMAC-SHA256``) against the worked example Alibaba
publishes: the fixed-parameter ``RunInstances`` request of "V3版本请求体&签名机制"
(https://help.aliyun.com/zh/sdk/product-overview/v3-request-structure-and-signature, its
steps repeated with the same values in https://help.aliyun.com/zh/functioncompute/fc/
developer-reference/signature-mechanism). Every expected string below is copied from that
document, none computed here."""

from __future__ import annotations

from plugins.sinks.sms_cloud import aliyun_v3

# the document's inputs
KEY_ID, SECRET = "YourAccessKeyId", "YourAccessKeySecret"
QUERY = {"ImageId": "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
         "RegionId": "cn-shanghai"}
HEADERS = {"host": "ecs.cn-shanghai.aliyuncs.com", "x-acs-action": "RunInstances",
           "x-acs-content-sha256":
               "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
           "x-acs-date": "2023-10-26T10:22:32Z",
           "x-acs-signature-nonce": "3156853299f313e23d1673dc12e1703d",
           "x-acs-version": "2014-05-26"}

# the document's intermediate and final values
PUBLISHED_QUERY = ("ImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd"
                   "&RegionId=cn-shanghai")
PUBLISHED_EMPTY_PAYLOAD = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
PUBLISHED_HEADERS = ("host:ecs.cn-shanghai.aliyuncs.com\n"
                     "x-acs-action:RunInstances\n"
                     "x-acs-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934"
                     "ca495991b7852b855\n"
                     "x-acs-date:2023-10-26T10:22:32Z\n"
                     "x-acs-signature-nonce:3156853299f313e23d1673dc12e1703d\n"
                     "x-acs-version:2014-05-26\n")
PUBLISHED_SIGNED = "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;" \
                   "x-acs-version"
PUBLISHED_STRING_TO_SIGN = ("ACS3-HMAC-SHA256\n"
                            "7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259")
PUBLISHED_SIGNATURE = "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
PUBLISHED_AUTHORIZATION = (
    "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=host;x-acs-action;"
    "x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,"
    "Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0")


def test_each_step_reproduces_the_published_example():
    assert aliyun_v3.canonical_query(QUERY) == PUBLISHED_QUERY
    assert aliyun_v3.sha256_hex(b"") == PUBLISHED_EMPTY_PAYLOAD
    assert aliyun_v3.canonical_headers(HEADERS) == (PUBLISHED_HEADERS, PUBLISHED_SIGNED)
    canonical = aliyun_v3.canonical_request("POST", "/", QUERY, HEADERS,
                                            PUBLISHED_EMPTY_PAYLOAD)
    assert canonical == "\n".join(["POST", "/", PUBLISHED_QUERY, PUBLISHED_HEADERS,
                                   PUBLISHED_SIGNED, PUBLISHED_EMPTY_PAYLOAD])
    assert aliyun_v3.string_to_sign(canonical) == PUBLISHED_STRING_TO_SIGN
    assert aliyun_v3.signature(SECRET, PUBLISHED_STRING_TO_SIGN) == PUBLISHED_SIGNATURE


def test_sign_gives_the_published_authorization_header():
    headers = aliyun_v3.sign("POST", "ecs.cn-shanghai.aliyuncs.com", "/", "RunInstances",
                             "2014-05-26", QUERY, b"", KEY_ID, SECRET,
                             "2023-10-26T10:22:32Z", "3156853299f313e23d1673dc12e1703d")
    assert headers["Authorization"] == PUBLISHED_AUTHORIZATION
    assert headers["x-acs-content-sha256"] == PUBLISHED_EMPTY_PAYLOAD


def test_a_changed_input_changes_the_signature():
    for change in ({"x-acs-date": "2023-10-26T10:22:33Z"}, {"host": "ecs.aliyuncs.com"}):
        canonical = aliyun_v3.canonical_request("POST", "/", QUERY, {**HEADERS, **change},
                                                PUBLISHED_EMPTY_PAYLOAD)
        assert aliyun_v3.signature(SECRET, aliyun_v3.string_to_sign(canonical)) \
            != PUBLISHED_SIGNATURE
    assert aliyun_v3.signature("other", PUBLISHED_STRING_TO_SIGN) != PUBLISHED_SIGNATURE


def test_only_host_content_type_and_acs_headers_are_signed_and_values_trimmed():
    text, names = aliyun_v3.canonical_headers({"Host": " h ", "User-Agent": "x",
                                               "Content-Type": "application/json",
                                               "X-Acs-Date": "d"})
    assert names == "content-type;host;x-acs-date"
    assert text == "content-type:application/json\nhost:h\nx-acs-date:d\n"
    assert aliyun_v3.canonical_query({"a b": "*~"}) == "a%20b=%2A~"
    assert aliyun_v3.canonical_uri("/api/v1 x") == "/api/v1%20x"
