"""The hub: a plugin-based IoT hub for electrical-fire and electricity-safety monitoring.

Plugins import :data:`hookimpl` from here::

    from hub import hookimpl

    @hookimpl
    def hub_register_device_models():
        return [DeviceModelType("acme_efd", AcmeEfd)]
"""

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("hub")

__all__ = ["__version__", "hookimpl"]
