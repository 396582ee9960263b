"""The stream: the MQTT session, ingest, storage, scheduled jobs and (later) detectors."""

from hub.errors import ConfigError, HubError, MigrationError, MqttError, ServiceError, StorageError
from hub.ingest import Ingestor, classify, partition_of
from hub.service import Hub
from hub.settings import Settings
from hub.storage import Database, migrate

__all__ = [
    "ConfigError",
    "Database",
    "Hub",
    "HubError",
    "Ingestor",
    "MigrationError",
    "MqttError",
    "ServiceError",
    "Settings",
    "StorageError",
    "classify",
    "migrate",
    "partition_of",
]
