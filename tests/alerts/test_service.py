"""The alert process (``ankang alerts``), its sweep on an injected clock, and ``ankang alarms``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from alerts import AlertService
from hub.settings import Settings
from tests.conftest import run_cli
from tests.support import REPO, rows, scalar, wait_until

from .test_lifecycle import T0, alarms, apply, detect


class AlertsProcess:
    """``ankang alerts`` in a subprocess, logging to a file."""

    def __init__(self, database_url: str) -> None:
        fd, name = tempfile.mkstemp(prefix="ankang-alerts-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)
        env = {**os.environ, "ANKANG_DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ankang.cli", "alerts", "--no-mqtt"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        wait_until(lambda: "alert service running" in self.log(), 30, "the alert service to start")

    def log(self) -> str:
        if self.proc.poll() is not None and "alert service running" not in self.log_path.read_text():
            raise AssertionError(f"ankang alerts exited with {self.proc.returncode}")
        return self.log_path.read_text(errors="replace")

    def stop(self) -> float:
        """SIGTERM; asserts a clean exit and returns how long it took."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(15) == 0, self.log()
        return time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def test_the_alerts_process_applies_detections_and_stops_on_sigterm(database):
    alerts = AlertsProcess(database)
    try:
        detect(database, "fall", "alarm", "w-101", T0)  # with the hub's NOTIFY
        wait_until(lambda: scalar(database, "SELECT count(*) FROM alarms"), 5, "the fall alarm")

        # Without a notification the one-second poll still finds it.
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO detections (key, kind, level, t, subject, confidence)"
                " VALUES ('quiet', 'sos', 'alarm', %s, 'b-1', 1)",
                (T0,),
            )
        wait_until(lambda: scalar(database, "SELECT count(*) FROM alarms") == 2, 5, "the sos alarm (polled)")
        assert alerts.stop() < 10
    finally:
        alerts.kill()
    assert "opened alarm" in alerts.log()
    assert scalar(database, "SELECT count(*) FROM detections WHERE alerted_at IS NULL") == 0


@pytest.mark.slow
def test_the_alerts_process_rides_out_a_database_outage(own_pg):
    url = own_pg.url
    alerts = AlertsProcess(url)
    try:
        own_pg.stop()
        time.sleep(6)  # the outage itself; no rule timing depends on it
        assert alerts.proc.poll() is None, "the alert service must wait out a database outage"
        own_pg.start()
        detect(url, "fire", "alarm", "fac-1/101", T0)
        wait_until(lambda: scalar(url, "SELECT count(*) FROM alarms"), 15, "the fire alarm after the outage")
        assert alerts.stop() < 10
    finally:
        alerts.kill()


def test_the_service_sweeps_on_its_injected_clock(database):
    now = [T0]
    detect(database, "device_offline", "alarm", "smoke-1", T0)
    detect(database, "device_online", "clear", "smoke-1", T0 + timedelta(seconds=30))
    detect(database, "fire", "alarm", "fac-1/101", T0)

    async def scenario() -> None:
        service = AlertService(
            Settings(database_url=database), clock=lambda: now[0], poll_s=0.05, sweep_s=0.05
        )
        stop = asyncio.Event()
        runner = asyncio.create_task(service.run(stop, apply_migrations=False), name="test.alerts")

        async def until(query: str, what: str) -> None:
            for _ in range(200):
                if await asyncio.to_thread(scalar, database, query):
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"timed out waiting for {what}")

        await until("SELECT count(*) = 2 FROM alarms", "both alarms")
        await asyncio.sleep(0.3)  # several sweeps inside the hold-down
        assert (
            await asyncio.to_thread(scalar, database, "SELECT count(*) FROM alarms WHERE state = 'resolved'")
            == 0
        )
        now[0] = T0 + timedelta(seconds=30 + 600)
        await until("SELECT count(*) FROM alarms WHERE state = 'resolved'", "the auto-resolve")
        stop.set()
        await asyncio.wait_for(runner, 10)

    asyncio.run(scenario())
    assert sorted((a[1], a[3]) for a in alarms(database)) == [
        ("device_offline", "resolved"),
        ("fire", "open"),
    ]


@pytest.fixture
def cli_env(database):
    return {"ANKANG_DATABASE_URL": database}


def test_alarms_list_ack_and_resolve_from_the_command_line(database, cli_env):
    detect(database, "fall", "alarm", "w-101", T0)
    apply(database)
    ((alarm_id, *_),) = alarms(database)

    listed = run_cli("alarms", "list", env=cli_env).stdout
    assert "fall" in listed
    assert "w-101" in listed
    assert "high" in listed

    out = run_cli("alarms", "ack", str(alarm_id), "--by", "nurse-li", "--note", "on my way", env=cli_env)
    assert "acknowledged by nurse-li" in out.stdout
    out = run_cli(
        "alarms", "resolve", str(alarm_id), "--by", "nurse-li", "--resolution", "false_alarm", env=cli_env
    )
    assert "resolved (false_alarm)" in out.stdout

    assert str(alarm_id) not in run_cli("alarms", "list", env=cli_env).stdout.split("\n", 1)[1]
    assert "w-101" in run_cli("alarms", "list", "--all", env=cli_env).stdout
    assert rows(
        database,
        "SELECT action, actor, channel, note FROM alarm_events WHERE alarm_id = %s ORDER BY id",
        (alarm_id,),
    ) == [
        ("opened", "system", "detector", None),
        ("acknowledged", "nurse-li", "cli", "on my way"),
        ("resolved", "nurse-li", "cli", None),
    ]


def test_alarms_commands_refuse_bad_input_with_exit_code_2(database, cli_env):
    detect(database, "fire", "alarm", "fac-1/101", T0)
    apply(database)
    ((alarm_id, *_),) = alarms(database)
    before = rows(database, "SELECT * FROM alarms"), rows(database, "SELECT * FROM alarm_events")

    cases = [
        (("alarms", "ack", "999999", "--by", "nurse-li"), "no alarm 999999"),
        (("alarms", "resolve", str(alarm_id), "--by", "x", "--resolution", "maybe"), "not one of"),
        (("alarms", "ack", str(alarm_id), "--by", "x", "--note", "n" * 2001), "at most 2000"),
        (("alarms", "ack", str(alarm_id), "--by", ""), "actor is empty"),
    ]
    for args, message in cases:
        proc = run_cli(*args, env=cli_env, check=False)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert message in proc.stderr, (args, proc.stderr)
    assert (rows(database, "SELECT * FROM alarms"), rows(database, "SELECT * FROM alarm_events")) == before

    run_cli("alarms", "resolve", str(alarm_id), "--by", "x", "--resolution", "test", env=cli_env)
    proc = run_cli(
        "alarms", "resolve", str(alarm_id), "--by", "x", "--resolution", "test", env=cli_env, check=False
    )
    assert proc.returncode == 2
    assert "already resolved" in proc.stderr
