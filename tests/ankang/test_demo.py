"""``ankang demo`` on its embedded broker and database: a fall, a fire and a bed exit become alarms
within the first two minutes, and Ctrl-C stops everything, leaving no process behind."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest

from ankang.demo import Component, DemoNight, run_components
from devices import CareProfile
from hub.detectors.bed import BedDetector

ROOT = Path(__file__).resolve().parents[2]


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free ports: all bound at once, so that none is handed out twice."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _descendants(pid: int) -> dict[int, str]:
    """Every process below ``pid``, with its command line (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = _cmdline(child)
            todo.append(child)
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _lines(stream: object, out: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        out.put(line)


SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(
    ("now", "night", "in_bed"),
    [
        ((6, 35), "06:25-15:25", (5 * 3600 + 35 * 60, 15 * 3600 + 55 * 60)),
        ((23, 50), "23:40-08:40", (22 * 3600 + 50 * 60, 9 * 3600 + 10 * 60)),
    ],
)
def test_the_demo_night_covers_its_start(now, night, in_bed) -> None:
    start = datetime(2026, 11, 30, *now, tzinfo=SHANGHAI)
    demo_night = DemoNight.starting_at(start)
    assert demo_night.night == night
    assert demo_night.in_bed == in_bed
    first, last = night.split("-")
    care = CareProfile(
        tz="Asia/Shanghai",
        night_start_min=int(first[:2]) * 60 + int(first[3:]),
        night_end_min=int(last[:2]) * 60 + int(last[3:]),
    )
    bed = BedDetector("bed-1", care)
    t = start.timestamp()
    assert bed.reading(t, {"occupied": 1.0}) == []
    exits = bed.reading(t + 75, {"occupied": 0.0})
    assert [(d.kind, d.level) for d in exits] == [("bed_exit", "alarm")], (
        "an exit just after the start alarms"
    )


def test_components_stop_in_reverse_order_and_a_stuck_one_is_cancelled() -> None:
    order: list[str] = []

    def polite(name: str) -> Component:
        async def run(stop: asyncio.Event) -> None:
            await stop.wait()
            order.append(name)

        return Component(name, run)

    async def stuck(stop: asyncio.Event) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            order.append("stuck (cancelled)")
            raise

    async def main() -> None:
        stop = asyncio.Event()
        comps = [polite("hub"), polite("alerts"), Component("stuck", stuck), polite("devices")]
        runner = asyncio.create_task(run_components(comps, stop, stop_timeout_s=0.2))
        await asyncio.sleep(0.05)
        assert order == []
        stop.set()
        await asyncio.wait_for(runner, 5)

    asyncio.run(main())
    assert order == ["devices", "stuck (cancelled)", "alerts", "hub"]


@pytest.mark.slow
def test_demo_raises_fall_fire_and_bed_exit_alarms_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANKANG_")}
    mqtt_port, pg_port, metrics_port, api_port = _free_ports(4)
    env.update(
        HOME=str(tmp_path / "home"),
        XDG_STATE_HOME=str(tmp_path / "state"),
        ANKANG_DEMO_MQTT_PORT=str(mqtt_port),
        ANKANG_DEMO_PG_PORT=str(pg_port),
        ANKANG_METRICS_PORT=str(metrics_port),
        ANKANG_API_PORT=str(api_port),
    )
    (tmp_path / "home").mkdir()
    stderr = (tmp_path / "demo.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ankang.cli", "demo"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True)
    reader.start()
    descendants: dict[int, str] = {}
    try:
        banner: list[str] = []
        url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            banner.append(line)
            if line.startswith("Database:"):
                url = line.split()[1]
        assert url is not None, f"no database URL: {banner}; {(tmp_path / 'demo.log').read_text()}"
        assert url.startswith("postgresql://postgres:")
        assert "127.0.0.1:" + env["ANKANG_DEMO_PG_PORT"] in url

        wanted = {"fall", "fire", "bed_exit"}
        found: dict[str, float] = {}
        start = None
        deadline = time.monotonic() + 150
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute(
                "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'"
            ).fetchone() == (0,), "the embedded database is plain PostgreSQL"
            while time.monotonic() < deadline and not wanted <= found.keys():
                assert proc.poll() is None, (tmp_path / "demo.log").read_text()[-3000:]
                start = conn.execute("SELECT extract(epoch FROM min(ts)) FROM messages").fetchone()[0]
                rows = conn.execute(
                    "SELECT type, extract(epoch FROM min(opened_at)) FROM alarms GROUP BY type"
                ).fetchall()
                found = {kind: float(t) for kind, t in rows}
                time.sleep(2)
            bed = conn.execute("SELECT subject FROM alarms WHERE type = 'bed_exit'").fetchall()
            descendants = _descendants(proc.pid)
        assert wanted <= found.keys(), f"alarms so far: {found}"
        assert start is not None
        after = {kind: round(found[kind] - float(start), 1) for kind in wanted}
        print("alarms after the first device message (s):", after)
        assert all(0 <= s <= 120 for s in after.values()), after
        assert ("bed-zhang",) in bed, "the scenario's bed exit, at home, at (the demo's) night"

        # the console's API serves them to the demo's nurse, and the family sees only its own
        assert any("nurse / ankang-nurse" in line for line in banner), banner
        api = f"http://127.0.0.1:{api_port}"
        assert any(line.startswith("Console:") and f"{api}/" in line for line in banner), banner
        nurse = httpx.post(f"{api}/api/v1/auth/token", data={"username": "nurse", "password": "ankang-nurse"})
        assert nurse.status_code == 200, nurse.text
        headers = {"Authorization": f"Bearer {nurse.json()['access_token']}"}
        seen = {
            a["type"]
            for state in ("unresolved", "resolved")
            for a in httpx.get(f"{api}/api/v1/alarms", params={"state": state}, headers=headers).json()
        }
        assert wanted <= seen, seen
        family = httpx.post(
            f"{api}/api/v1/auth/token", data={"username": "family", "password": "ankang-family"}
        )
        mine = httpx.get(
            f"{api}/api/v1/alarms",
            params={"state": "unresolved"},
            headers={"Authorization": f"Bearer {family.json()['access_token']}"},
        ).json()
        assert all(a["resident_id"] == "R001" for a in mine), mine
        assert any("postgres" in cmd for cmd in descendants.values()), descendants
        assert any("iotcore" in cmd for cmd in descendants.values()), descendants

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, (tmp_path / "demo.log").read_text()[-3000:]
        left = {pid: cmd for pid, cmd in descendants.items() if _cmdline(pid) == cmd and cmd}
        assert not left, f"processes left behind: {left}"
        log = (tmp_path / "demo.log").read_text()
        assert "embedded PostgreSQL stopped" in log
        assert "did not stop" not in log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in descendants:
            if _cmdline(pid) == descendants[pid]:
                os.kill(pid, signal.SIGKILL)
        reader.join(10)
        assert proc.stdout is not None
        proc.stdout.close()
        stderr.close()
