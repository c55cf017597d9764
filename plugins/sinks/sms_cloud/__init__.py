"""Built-in SMS providers ``aliyun``, ``tencent`` and ``http``, for the ``sms`` sink.

Each is a small provider behind :class:`hub.contracts.SmsProvider`, chosen by
``sinks.<id>.provider.type``; the rest of that section is the provider's options (see
README, "SMS providers"):

* ``aliyun`` (:mod:`.aliyun`): Alibaba Cloud SMS, Dysmsapi ``SendSms``, signature V3
  ACS3-HMAC-SHA256 (:mod:`.aliyun_v3`; ``signature: v2`` keeps the RPC HMAC-SHA1 one,
  :mod:`.aliyun_sign`);
* ``aliyun_voice`` (:mod:`.aliyun_voice`): Alibaba Cloud voice notification, Dyvmsapi
  ``SingleCallByTts``, signature V3, the provider's per-number limits kept on our side
  (a plugin of its own, ``aliyun_voice``, registered by that module);
* ``tencent`` (:mod:`.tencent`): Tencent Cloud SMS API 3.0 ``SendSms``, signature v3
  TC3-HMAC-SHA256 (:mod:`.tencent_sign`);
* ``http`` (:mod:`.generic_http`): a configurable request for local SMS gateways;
* ``tencent_voice`` (:mod:`.tencent_voice`): Tencent Cloud VMS ``SendTtsVoice``, a voice
  call reading a template (for the alarm desk's notification channels).

Signing is pure (the timestamp and nonce are passed in); sending goes through
:mod:`.http_client` (Twisted's Agent with a timeout). Endpoints are options, so tests and
private deployments point them elsewhere.
"""

from __future__ import annotations

from hub import hookimpl
from hub.contracts import SmsProviderType
from plugins.sinks.sms_cloud import aliyun, generic_http, tencent, tencent_voice


@hookimpl
def hub_register_sms_providers() -> list[SmsProviderType]:
    return [
        SmsProviderType("aliyun", aliyun.factory, aliyun.check_options,
                        "Alibaba Cloud SMS (Dysmsapi SendSms)"),
        SmsProviderType("tencent", tencent.factory, tencent.check_options,
                        "Tencent Cloud SMS (API 3.0 SendSms)"),
        SmsProviderType("http", generic_http.factory, generic_http.check_options,
                        "a local SMS gateway through a configurable HTTP request"),
        SmsProviderType("tencent_voice", tencent_voice.factory, tencent_voice.check_options,
                        "Tencent Cloud voice notification (VMS SendTtsVoice)"),
    ]
