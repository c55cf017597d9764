"""Types of the LwM2M resources the hub meets, from the OMA LwM2M registry object files.

TLV and text/plain carry no types, so a decoder needs the resource's type to turn bytes
into a number. Resource ids 0-2047 mean something different in every object and are
listed per object; ids from 2048 up are IPSO "reusable resources" whose meaning and type
are the same in every object that uses them, so one table serves 3200, 3303, 3316, ….

Type names: "string", "integer", "unsigned", "float", "boolean", "opaque", "time",
"objlnk". Executable resources have no type and give ``None``, like unknown ones.
"""

from __future__ import annotations

from hub.contracts.lwm2m import Path

# Per object: resource id -> type. Sources: OMA registry 1.xml (LwM2M Server, 1.1),
# 3.xml (Device), 19.xml (BinaryAppDataContainer). Executables are left out.
_OBJECT_RESOURCES: dict[int, dict[int, str]] = {
    1: {
        0: "integer",  # Short Server ID
        1: "integer",  # Lifetime (s)
        2: "integer",  # Default Minimum Period (s)
        3: "integer",  # Default Maximum Period (s)
        5: "integer",  # Disable Timeout (s)
        6: "boolean",  # Notification Storing When Disabled or Offline
        7: "string",  # Binding
        10: "objlnk",  # APN Link
        11: "unsigned",  # TLS-DTLS Alert Code
        12: "time",  # Last Bootstrapped
        13: "unsigned",  # Registration Priority Order
        14: "unsigned",  # Initial Registration Delay Timer
        15: "boolean",  # Registration Failure Block
        16: "boolean",  # Bootstrap on Registration Failure
        17: "unsigned",  # Communication Retry Count
        18: "unsigned",  # Communication Retry Timer
        19: "unsigned",  # Communication Sequence Delay Timer
        20: "unsigned",  # Communication Sequence Retry Count
        21: "boolean",  # Trigger
        22: "string",  # Preferred Transport
        23: "boolean",  # Mute Send
    },
    5: {  # Firmware Update
        0: "opaque",  # Package
        1: "string",  # Package URI
        3: "integer",  # State
        5: "integer",  # Update Result
        6: "string",  # PkgName
        7: "string",  # PkgVersion
        8: "integer",  # Firmware Update Protocol Support (multiple)
        9: "integer",  # Firmware Update Delivery Method
    },
    3: {
        0: "string",  # Manufacturer
        1: "string",  # Model Number
        2: "string",  # Serial Number
        3: "string",  # Firmware Version
        6: "integer",  # Available Power Sources (multiple)
        7: "integer",  # Power Source Voltage, mV (multiple)
        8: "integer",  # Power Source Current, mA (multiple)
        9: "integer",  # Battery Level, %
        10: "integer",  # Memory Free, KB
        11: "integer",  # Error Code (multiple)
        13: "time",  # Current Time
        14: "string",  # UTC Offset
        15: "string",  # Timezone
        16: "string",  # Supported Binding and Modes
        17: "string",  # Device Type
        18: "string",  # Hardware Version
        19: "string",  # Software Version
        20: "integer",  # Battery Status
        21: "integer",  # Memory Total, KB
        22: "objlnk",  # ExtDevInfo (multiple)
    },
    19: {
        0: "opaque",  # Data (multiple)
        1: "integer",  # Data Priority
        2: "time",  # Data Creation Time
        3: "string",  # Data Description
        4: "string",  # Data Format
        5: "integer",  # App ID
    },
}

# IPSO reusable resources (OMA registry "reusable resources" list and the object files
# 3200, 3201, 3303, 3305, 3312, 3316, 3317, 3328, 3331, 3342). Executables (5505 Counter
# Reset, 5605 Reset Min/Max, 5822 Reset Cumulative energy) are left out.
_REUSABLE_RESOURCES: dict[int, str] = {
    5500: "boolean",  # Digital Input State
    5501: "integer",  # Digital Input Counter
    5502: "boolean",  # Digital Input Polarity
    5503: "integer",  # Digital Input Debounce, ms
    5504: "integer",  # Digital Input Edge Selection
    5518: "time",  # Timestamp
    5550: "boolean",  # Digital Output State
    5551: "boolean",  # Digital Output Polarity
    5601: "float",  # Min Measured Value
    5602: "float",  # Max Measured Value
    5603: "float",  # Min Range Value
    5604: "float",  # Max Range Value
    5700: "float",  # Sensor Value
    5701: "string",  # Sensor Units
    5750: "string",  # Application Type
    5751: "string",  # Sensor Type
    5800: "float",  # Instantaneous active power, W
    5801: "float",  # Min Measured active power
    5802: "float",  # Max Measured active power
    5803: "float",  # Min Range active power
    5804: "float",  # Max Range active power
    5805: "float",  # Cumulative active power, Wh
    5806: "float",  # Active Power Calibration
    5810: "float",  # Instantaneous reactive power, var
    5811: "float",  # Min Measured reactive power
    5812: "float",  # Max Measured reactive power
    5813: "float",  # Min Range reactive power
    5814: "float",  # Max Range reactive power
    5815: "float",  # Cumulative reactive power, varh
    5816: "float",  # Reactive Power Calibration
    5820: "float",  # Power factor
    5821: "float",  # Current Calibration
    5850: "boolean",  # On/Off
    5851: "integer",  # Dimmer, %
    5852: "integer",  # On time, s
    5853: "string",  # Multi-state Output
    5854: "integer",  # Off Time, s
    6042: "integer",  # Measurement Quality Indicator
    6049: "integer",  # Measurement Quality Level
    6050: "float",  # Fractional Timestamp
}

_FIRST_REUSABLE_ID = 2048

# (object, resource) pairs that are multiple-instance resources.
_MULTIPLE: frozenset[tuple[int, int]] = frozenset({
    (3, 6), (3, 7), (3, 8), (3, 11), (3, 22),
    (19, 0),
})


def resource_type(path: Path) -> str | None:
    """The type of the resource at ``path`` (object, instance, resource[, instance]),
    ``None`` when the path is not a resource or the resource is unknown or executable."""
    if len(path) < 3:
        return None
    obj, res = path[0], path[2]
    if res >= _FIRST_REUSABLE_ID:
        return _REUSABLE_RESOURCES.get(res)
    return _OBJECT_RESOURCES.get(obj, {}).get(res)


def is_multiple(path: Path) -> bool:
    """Whether the resource at ``path`` (object, instance, resource[, instance]) is a
    multiple-instance resource, as far as the objects above are known."""
    return len(path) >= 3 and (path[0], path[2]) in _MULTIPLE
