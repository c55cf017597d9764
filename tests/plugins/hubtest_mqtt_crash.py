"""A test distribution that injects a bug into the running ``mqtt`` engine once, the way an
unforeseen exception in paho or in our own callbacks would: ``HUBTEST_MQTT_CRASH=N`` makes
the engine's handling of the N-th received message (paho: its ``on_message`` callback in
paho's thread, where it builds the message; native: the hand-over of a decoded batch in the
reactor) raise ``RuntimeError``. Without a supervisor either stops ingest for good."""

from __future__ import annotations

import os

from hub import hookimpl


@hookimpl
def hub_startup(hub):
    after = int(os.environ.get("HUBTEST_MQTT_CRASH", "0"))
    if not after:
        return
    from plugins.transports.mqtt import native_engine, paho_engine

    seen = [0]

    def once(cls, name, messages):  # cls: a class or a module
        original = getattr(cls, name)

        def patched(*args, **kwargs):
            before = seen[0]
            seen[0] += messages(args)
            if before < after <= seen[0]:
                setattr(cls, name, original)
                raise RuntimeError(f"injected: {name} raised")
            return original(*args, **kwargs)

        setattr(cls, name, patched)

    # paho: a global that _on_message looks up for each message; native: called per batch
    once(paho_engine, "Received", lambda args: 1)
    once(native_engine.NativeConnection, "received", lambda args: len(args[1]))
