"""What a device is: kinds, the v1 message contract and its decoder, and the registry.

Nothing here knows about MQTT sessions or storage; ``hub`` builds on this package.
"""

from devices.contract import (
    CHANNELS,
    EVENTS,
    KINDS,
    MAX_PAYLOAD_BYTES,
    Event,
    Message,
    Rejected,
    Status,
    Telemetry,
    decode,
    device_id_from_topic,
    is_valid_device_id,
    json_schema,
)
from devices.errors import DeviceError, RegistryError
from devices.registry import CareProfile, Device, DeviceSpec, FacilityFile, Registry, load_facility_file

__all__ = [
    "CHANNELS",
    "EVENTS",
    "KINDS",
    "MAX_PAYLOAD_BYTES",
    "CareProfile",
    "Device",
    "DeviceError",
    "DeviceSpec",
    "Event",
    "FacilityFile",
    "Message",
    "Registry",
    "RegistryError",
    "Rejected",
    "Status",
    "Telemetry",
    "decode",
    "device_id_from_topic",
    "is_valid_device_id",
    "json_schema",
    "load_facility_file",
]
