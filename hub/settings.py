"""One typed settings object, read from ``ANKANG_*`` environment variables.

It is validated once at start-up and passed in; nothing reads the environment later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from devices.mqtt import MqttEndpoint

DEFAULT_MQTT_URL = "mqtt://127.0.0.1:18830"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:55432/ankang"

PositiveInt = Annotated[int, Field(ge=1)]

BrokerAuthMode = Literal["none", "passwd", "dynsec"]


@dataclass(frozen=True, slots=True)
class PasswdFilesSettings:
    """Mosquitto's password and ACL files, and its pid file for the reload signal."""

    password_file: Path
    acl_file: Path
    pid_file: Path


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """How provisioning reaches the broker (docs/deployment.md), checked as a whole: the
    files that ``passwd`` needs, the admin account that ``dynsec`` needs."""

    mode: BrokerAuthMode
    files: PasswdFilesSettings | None
    admin: MqttEndpoint | None
    public_url: str  # the address printed for devices with their credentials


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ANKANG_", extra="ignore", frozen=True)

    mqtt_url: str = DEFAULT_MQTT_URL
    database_url: str = DEFAULT_DATABASE_URL

    # The hub's identity on the broker. With several workers each has its own partition,
    # and its own persistent session (client id), so that a restart resumes its own queue.
    hub_client_id: str = "ankang-hub"
    hub_partition: int = Field(default=0, ge=0)
    hub_partitions: int = Field(default=1, ge=1, le=256)
    # Two ingest lanes (docs/devices.md, "Lanes"): events and statuses on a session of their
    # own, so that they never queue behind bulk telemetry. On a broker that ties client ids to
    # accounts the urgent session needs an account of its own: mqtt[s]://user:pass@host:port.
    urgent_lane: bool = True
    mqtt_urgent_url: str | None = None
    # The technical alarm "data delayed" opens at this lane lag and clears below the second
    # (hub.lag, docs/devices.md).
    lag_alarm_s: float = Field(default=10.0, gt=0, le=3600)
    lag_clear_s: float = Field(default=2.0, gt=0, le=3600)
    # MQTT 5 session expiry: how long the broker keeps our queue while the hub is away.
    mqtt_session_expiry_s: PositiveInt = 7 * 24 * 3600
    # The most messages the hub holds unacknowledged (it acknowledges only after commit): the
    # MQTT session stops reading the socket at this many. Also sent as MQTT 5 Receive Maximum,
    # which Mosquitto 2.0 does not keep to once acknowledgements flow (docs/architecture.md).
    mqtt_receive_maximum: int = Field(default=20_000, ge=10, le=65_000)
    mqtt_keepalive_s: int = Field(default=30, ge=5, le=3600)
    # PEM file of a private CA that signed the broker's certificate, for mqtts:// URLs.
    mqtt_ca_file: str | None = None

    # How `ankang devices provision|rotate|revoke` reach the broker (docs/deployment.md):
    # "none" (anonymous broker, credentials only recorded), "passwd" (Mosquitto password and
    # ACL files, reloaded with SIGHUP) or "dynsec" (Mosquitto's dynamic-security plugin).
    broker_auth: BrokerAuthMode = "none"
    broker_password_file: str | None = None
    broker_acl_file: str | None = None
    broker_pid_file: str | None = None  # the running Mosquitto's pid_file, for the SIGHUP
    # dynsec: an account with the plugin's admin role, mqtt[s]://admin:secret@host:port
    broker_admin_url: str | None = None
    # The address printed for devices with their credentials; default: ANKANG_MQTT_URL's host.
    broker_public_url: str | None = None

    # Batching and backpressure.
    ingest_max_batch: int = Field(default=5_000, ge=1, le=65_000)
    ingest_retry_max_s: float = Field(default=5.0, gt=0)
    # After the first message of a batch arrives, wait this long for more. A few
    # milliseconds turn a trickle of one-message transactions into batches of dozens.
    ingest_linger_s: float = Field(default=0.02, ge=0, le=1.0)

    # Operations endpoint (/healthz, /metrics). Port 0 disables it.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9465, ge=0, le=65535)

    # Scheduled jobs.
    jobs_initial_delay_s: float = Field(default=60.0, ge=0)  # first rollup/retention run after start
    rollup_interval_s: float = Field(default=300.0, gt=0)
    rollup_lateness_s: float = Field(default=7200.0, ge=0)
    retention_interval_s: float = Field(default=3600.0, gt=0)
    retention_waveforms_days: PositiveInt = 7
    retention_readings_days: PositiveInt = 180
    # GB 50440 keeps records for 6 months: events, statuses and alarms may not go sooner.
    retention_events_days: Annotated[int, Field(ge=183)] = 366
    retention_messages_days: PositiveInt = 180
    retention_quarantine_days: PositiveInt = 30
    retention_rollups_days: PositiveInt = 3 * 366
    baseline_interval_s: float = Field(default=24 * 3600.0, gt=0)  # inactivity baselines

    # Detection. The fall model defaults to the one shipped with the hub.
    detection: bool = True
    fall_model: str | None = None
    # Heartbeat deadlines are checked this often; slower rules (bed, inactivity) every
    # ``detect_slow_tick_s``.
    detect_tick_s: float = Field(default=0.5, gt=0, le=10)
    detect_slow_tick_s: float = Field(default=5.0, gt=0, le=600)

    # Adapters for foreign ecosystems on the hub's broker (docs/integrations.md): Zigbee2MQTT
    # under its base topic, ChirpStack v4's MQTT integration events.
    zigbee2mqtt: bool = False
    zigbee2mqtt_base_topic: str = Field(default="zigbee2mqtt", pattern=r"^[^+#/][^+#]*[^+#/]$|^[^+#/]$")
    chirpstack: bool = False
    chirpstack_topic: str = Field(
        default="application/+/device/+/event/+", pattern=r"^([^+#]+/)?application/\+/device/\+/event/\+$"
    )
    # Home Assistant MQTT discovery from `ankang alerts` (alerts/hadiscovery.py): retained
    # entities and states per facility. Only while the alert service publishes to MQTT at all
    # (`ankang alerts --no-mqtt` turns both off).
    ha_discovery: bool = True

    @field_validator("mqtt_url", "mqtt_urgent_url")
    @classmethod
    def _mqtt_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(
                "ANKANG_MQTT_URL and ANKANG_MQTT_URGENT_URL must look like mqtt://user:pass@host:port"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("postgresql", "postgres"):
            raise ValueError("ANKANG_DATABASE_URL must be a postgresql:// URL")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        """Checks that span several settings, so that every command refuses the same
        inconsistent configuration at start-up with the same message."""
        if self.hub_partition >= self.hub_partitions:
            raise ValueError(
                f"ANKANG_HUB_PARTITION {self.hub_partition} must be below "
                f"ANKANG_HUB_PARTITIONS {self.hub_partitions}"
            )
        if self.broker_auth == "passwd":
            missing = [
                name
                for name, value in (
                    ("ANKANG_BROKER_PASSWORD_FILE", self.broker_password_file),
                    ("ANKANG_BROKER_ACL_FILE", self.broker_acl_file),
                    ("ANKANG_BROKER_PID_FILE", self.broker_pid_file),
                )
                if not value
            ]
            if missing:
                raise ValueError(f"ANKANG_BROKER_AUTH=passwd needs {', '.join(missing)}")
        if self.broker_auth == "dynsec" and not self.broker_admin_url:
            raise ValueError("ANKANG_BROKER_AUTH=dynsec needs ANKANG_BROKER_ADMIN_URL")
        if self.broker_admin_url is not None:
            parts = urlsplit(self.broker_admin_url)
            if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname or not parts.username:
                raise ValueError("ANKANG_BROKER_ADMIN_URL must look like mqtt[s]://admin:secret@host:port")
        return self

    @property
    def mqtt(self) -> MqttEndpoint:
        return MqttEndpoint.from_url(self.mqtt_url, ca_file=self.mqtt_ca_file)

    @property
    def broker(self) -> BrokerSettings:
        files = None
        if self.broker_password_file and self.broker_acl_file and self.broker_pid_file:
            files = PasswdFilesSettings(
                Path(self.broker_password_file), Path(self.broker_acl_file), Path(self.broker_pid_file)
            )
        admin = None
        if self.broker_admin_url:
            admin = MqttEndpoint.from_url(self.broker_admin_url, ca_file=self.mqtt_ca_file)
        return BrokerSettings(self.broker_auth, files, admin, self.broker_public_url or self.mqtt.url)

    def retention(self) -> dict[str, timedelta]:
        """Table name to age after which its rows (chunks) are dropped."""
        return {
            "waveforms": timedelta(days=self.retention_waveforms_days),
            "readings": timedelta(days=self.retention_readings_days),
            "events": timedelta(days=self.retention_events_days),
            "statuses": timedelta(days=self.retention_events_days),
            "messages": timedelta(days=self.retention_messages_days),
            "quarantine": timedelta(days=self.retention_quarantine_days),
            "dead_letters": timedelta(days=self.retention_quarantine_days),
        }
