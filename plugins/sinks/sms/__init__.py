"""The ``sms`` sink: alarms, faults, offline devices and recoveries as text messages to the
site's safety officers (短信报警), through a provider plugin (``hub_register_sms_providers``).

* :mod:`.phones`: E.164 / mainland numbers; :mod:`.textparts`: SMS part counting;
  :mod:`.templates`: texts; :mod:`.routing`: who hears of what; :mod:`.storm`: duplicates,
  summaries and rate limits; :mod:`.escalation`: the ladder; all sans-IO.
* :mod:`.options`: the sink's options; :mod:`.sink`: the service.

Configuration (``sinks.<name>`` in ``hub.yaml``)::

    sinks:
      sms:
        type: sms
        provider: {type: aliyun, ...}      # checked by the provider plugin
        time_zone: Asia/Shanghai
        recipients:                        # groups of phones (E.164 or 11-digit mainland)
          duty: ["13800138000"]
          managers: ["+8613900139000"]
        routes:
          - kinds: [alarm, offline, recovery]   # alarm, fault, offline, recovery; default all
            levels: [alarm]                     # info, warning, alarm, fault; default all
            projects: [campus-a]                # default all
            groups: [配电房]                     # device groups; default all
            notify: [duty]
            escalate: [managers]                # next group after escalate_after s unacked
            escalate_after: 600
        dedup_window: 600     # s: the same alarm is not sent again to a phone within it
        summary_after: 3      # messages to one phone within summary_window, then ...
        summary_window: 120   # ... it is held that long and what came meanwhile is summed up
        rate_limits: [{count: 5, per: 60}, {count: 30, per: 3600}]
        max_parts: 4          # 70 UCS-2 characters in one part, 67 per part beyond
        templates: {alarm: "【电气火灾报警】{where}{what}：{reading}。时间{time}"}
        retry_initial: 2      # s, doubling up to retry_max, with jitter
        retry_max: 300
        send_timeout: 30
"""

from __future__ import annotations

from hub import hookimpl
from hub.contracts import SinkType
from plugins.sinks.sms.options import SmsOptions, check_options
from plugins.sinks.sms.sink import SmsSink


@hookimpl
def hub_register_sink_types() -> list[SinkType]:
    return [SinkType("sms", SmsSink, check_options,
                     "alarm text messages to safety officers, through an SMS provider")]


__all__ = ["SmsOptions", "SmsSink", "check_options"]
