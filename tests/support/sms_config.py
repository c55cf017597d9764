"""A hub configuration with one ``line_tcp`` device and the ``sms`` sink on the aliyun provider."""

from __future__ import annotations

from pathlib import Path

import yaml

KEY_ID, SECRET = "LTAI-test", "s3cret"


def sms_config(tmp_path: Path, port: int, endpoint: str, **sink) -> Path:
    config = {
        "hub": {"state_dir": str(tmp_path / "var")},
        "journal": {"commit_interval_ms": 2},
        "alarms": {"defaults": {"temperature": {"alarm": 80, "hysteresis": 2}}},
        "transports": {"lines": {"type": "line_tcp", "port": port}},
        "devices": [{"id": "efd-1", "model": "json_demo", "transport": "lines",
                     "address": "EFD0001", "name": "1号配电箱", "location": "A栋1层",
                     "project": "campus-a"}],
        "sinks": {"sms": {
            "type": "sms",
            "provider": {"type": "aliyun", "access_key_id": KEY_ID,
                         "access_key_secret": {"file": "aliyun.secret"},
                         "sign_name": "电气火灾监控",
                         "endpoint": endpoint,
                         "templates": {k: f"SMS_{k}" for k in
                                       ("alarm", "fault", "offline", "recovery", "summary")}},
            "recipients": {"duty": ["13800138000"]},
            "routes": [{"notify": ["duty"], "levels": ["alarm"], "kinds": ["alarm"]}],
            **sink}},
    }
    (tmp_path / "aliyun.secret").write_text(SECRET + "\n")
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return path

