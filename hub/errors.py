"""Exceptions of the ``hub`` package.

    HubError
    ├── ConfigError          settings are missing, malformed or unsafe
    ├── ServiceError         a local Mosquitto or PostgreSQL could not be started or stopped
    ├── MqttError            the broker refused us or the session is closed
    └── StorageError         the database refused a migration or a write
        └── MigrationError   a numbered migration failed; nothing after it was applied

Bad device input is never an exception: ``devices.decode`` returns a quarantine record.
"""


class HubError(Exception):
    """Root of every error raised by ``hub``."""


class ConfigError(HubError):
    """Settings are missing, malformed or unsafe."""


class ServiceError(HubError):
    """A local service could not be started, stopped or reached."""


class MqttError(HubError):
    """The MQTT session failed or is closed."""


class StorageError(HubError):
    """The database refused an operation."""


class MigrationError(StorageError):
    """A migration failed."""
