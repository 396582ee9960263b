"""The settings refuse inconsistent combinations at start-up, in one place for every command."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from hub.settings import Settings


def test_passwd_needs_its_three_files():
    with pytest.raises(ValidationError, match="passwd needs ANKANG_BROKER_ACL_FILE, ANKANG_BROKER_PID_FILE"):
        Settings(broker_auth="passwd", broker_password_file="/etc/mosquitto/passwd")  # noqa: S106 - a path


def test_dynsec_needs_an_admin_account():
    with pytest.raises(ValidationError, match="dynsec needs ANKANG_BROKER_ADMIN_URL"):
        Settings(broker_auth="dynsec")
    with pytest.raises(ValidationError, match="mqtt\\[s\\]://admin:secret@host:port"):
        Settings(broker_auth="dynsec", broker_admin_url="mqtt://127.0.0.1:1883")


def test_a_partition_is_below_the_count():
    with pytest.raises(ValidationError, match="must be below ANKANG_HUB_PARTITIONS 2"):
        Settings(hub_partition=2, hub_partitions=2)


def test_the_broker_view_carries_what_the_mode_needs():
    s = Settings(
        broker_auth="passwd",
        broker_password_file="/p",  # noqa: S106 - a path, not a secret
        broker_acl_file="/a",
        broker_pid_file="/run/m.pid",
        mqtt_url="mqtts://hub:secret@broker.example:8883",
    )
    assert s.broker.files is not None and s.broker.files.acl_file == Path("/a")
    assert s.broker.public_url == "mqtts://broker.example:8883"  # no credentials in what devices are shown
    d = Settings(broker_auth="dynsec", broker_admin_url="mqtt://admin:pw@127.0.0.1:1883")
    assert d.broker.admin is not None and d.broker.admin.username == "admin"
    assert Settings().broker.mode == "none"
