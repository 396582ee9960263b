"""Exceptions of the ``devices`` package.

    DeviceError
    └── RegistryError        a facility file or registry entry is invalid

Payload problems are never raised: the decoder returns a ``Rejected`` value with a reason.
"""


class DeviceError(Exception):
    """Root of every error raised by ``devices``."""


class RegistryError(DeviceError):
    """A facility file, or a device or facility definition, is invalid."""
