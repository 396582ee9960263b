"""The registry through the real CLI and database: add, list, import, and hostile files."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices import load_facility_file
from devices.errors import RegistryError
from tests.conftest import run_cli
from tests.support import rows, scalar

FACILITY = """
facilities:
  - id: qd-01
    name: 康乐养老院
    tz: Asia/Shanghai
    district: 市南区
    rooms:
      - id: "101"
        beds:
          - {id: "101-1", nursing: true, resident: {id: R001, name: 王秀英}}
      - {id: kitchen, kind: kitchen}
devices:
  - {id: smoke-101, kind: smoke_detector, facility: qd-01, room: "101"}
  - {id: bed-101-1, kind: bed_sensor, facility: qd-01, room: "101", bed: "101-1", resident: R001}
  - {id: watch-R001, kind: wearable, facility: qd-01, resident: R001, placement: wrist, heartbeat_s: 30}
"""


def test_add_and_list(database):
    env = {"ANKANG_DATABASE_URL": database}
    run_cli(
        "devices", "add", "gas-1", "--kind", "gas_detector", "--facility", "f1", "--room", "kitchen", env=env
    )
    run_cli(
        "devices",
        "add",
        "bed-1",
        "--kind",
        "bed_sensor",
        "--facility",
        "f1",
        "--room",
        "201",
        "--bed",
        "A",
        "--resident",
        "R9",
        "--heartbeat-s",
        "30",
        env=env,
    )
    out = run_cli("devices", "list", env=env).stdout
    assert "gas-1" in out and "gas_detector" in out
    assert rows(
        database, "SELECT id, room_id, bed_id, resident_id, heartbeat_s FROM devices ORDER BY id"
    ) == [
        ("bed-1", "201", "A", "R9", 30),
        ("gas-1", "kitchen", None, None, 600),
    ]
    assert scalar(database, "SELECT tz FROM facilities WHERE id = 'f1'") == "Asia/Shanghai"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bad id!", "--kind", "wearable", "--facility", "f1"], "device id must match"),
        (["d1", "--kind", "toaster", "--facility", "f1"], "kind"),
        (["d1", "--kind", "wearable", "--facility", "f1", "--bed", "3"], "a bed needs its room"),
        (["d1", "--kind", "wearable", "--facility", "f1", "--placement", "ankle"], "placement"),
    ],
)
def test_add_refuses_bad_input(database, args, message):
    proc = run_cli("devices", "add", *args, env={"ANKANG_DATABASE_URL": database}, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert scalar(database, "SELECT count(*) FROM devices") == 0


def test_import_yaml_and_csv(database, tmp_path: Path):
    env = {"ANKANG_DATABASE_URL": database}
    yaml_file = tmp_path / "site.yaml"
    yaml_file.write_text(FACILITY, encoding="utf-8")
    out = run_cli("devices", "import", str(yaml_file), env=env).stdout
    assert "imported 1 facilities and 3 devices" in out
    assert scalar(database, "SELECT name FROM residents WHERE id = 'R001'") == "王秀英"
    assert scalar(database, "SELECT nursing FROM beds WHERE id = '101-1'") is True
    assert scalar(database, "SELECT placement FROM devices WHERE id = 'watch-R001'") == "wrist"
    csv_file = tmp_path / "devices.csv"
    csv_file.write_text(
        "id,kind,facility,room,heartbeat_s\nleak-1,water_leak,qd-01,kitchen,\n", encoding="utf-8"
    )
    run_cli("devices", "import", str(csv_file), env=env)
    assert scalar(database, "SELECT heartbeat_s FROM devices WHERE id = 'leak-1'") == 3600
    # importing the same file again changes nothing
    run_cli("devices", "import", str(yaml_file), env=env)
    assert scalar(database, "SELECT count(*) FROM devices") == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("facilities: [{id: f, tz: Mars/Olympus}]", "unknown time zone"),
        (
            "devices: [{id: a, kind: wearable, facility: f}, {id: a, kind: wearable, facility: f}]",
            "duplicate",
        ),
        ("devices: [{id: a, kind: wearable, facility: f, colour: red}]", "Extra inputs"),
        ("- just\n- a list", "a facility file is a mapping"),
        ("devices: [{id: a, kind: wearable, facility: f}]\n  bad: : indent", "invalid YAML"),
    ],
)
def test_hostile_facility_files_write_nothing(database, tmp_path: Path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RegistryError, match=message):
        load_facility_file(path)
    proc = run_cli("devices", "import", str(path), env={"ANKANG_DATABASE_URL": database}, check=False)
    assert proc.returncode == 1
    assert scalar(database, "SELECT count(*) FROM devices") == 0


def test_csv_without_required_columns(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_text("name,type\nx,y\n", encoding="utf-8")
    with pytest.raises(RegistryError, match="id, kind, facility"):
        load_facility_file(path)


def test_binary_file_is_refused(tmp_path: Path):
    path = tmp_path / "d.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(RegistryError, match="UTF-8"):
        load_facility_file(path)


CARE_YAML = """
facilities:
  - id: home-9
    kind: home
    night: "22:30-07:00"
    bed_return_min: 10
    rooms:
      - id: bedroom
        beds: [{id: A, resident: {id: R9, hr_range: [40, 95], rr_range: [8, 22]}}]
devices:
  - {id: mat-9, kind: bed_sensor, facility: home-9, room: bedroom, bed: A, resident: R9}
  - {id: smoke-9, kind: smoke_detector, facility: home-9, room: bedroom}
"""


def test_care_settings_reach_the_devices(database, tmp_path: Path):
    import asyncio

    import psycopg

    from devices import CareProfile, Registry

    path = tmp_path / "home.yaml"
    path.write_text(CARE_YAML)
    run_cli("devices", "import", str(path), env={"ANKANG_DATABASE_URL": database})

    async def read() -> dict:
        async with await psycopg.AsyncConnection.connect(database) as conn:
            return {d.id: d for d in await Registry(conn).devices()}

    devices = asyncio.run(read())
    care = devices["mat-9"].care
    assert (care.night_start_min, care.night_end_min, care.bed_return_min) == (22 * 60 + 30, 7 * 60, 10)
    assert care.hr_range == (40.0, 95.0) and care.rr_range == (8.0, 22.0)
    # a device without a resident gets the facility's settings and the default ranges
    other = devices["smoke-9"].care
    assert other.night_start_min == 22 * 60 + 30 and other.hr_range == CareProfile().hr_range


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('facilities: [{id: f, night: "25:00-06:00"}]', "night"),
        ("facilities: [{id: f, bed_return_min: 0}]", "bed_return_min"),
        (
            "facilities: [{id: f, rooms: [{id: r, beds: [{id: b, resident: {id: R, hr_range: [90, 40]}}]}]}]",
            "low < high",
        ),
        (
            "facilities: [{id: f, rooms: [{id: r, beds: [{id: b, resident: {id: R, rr_range: [0, 20]}}]}]}]",
            "rr_range",
        ),
    ],
)
def test_bad_care_settings_are_refused(tmp_path: Path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(RegistryError, match=message):
        load_facility_file(path)
