"""The HTTP API against a real database: login, roles and tenant scope, alarms end to end
(acknowledge, resolve, audit, evidence, the live stream), readings, contacts and policies."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest

from tests.api.conftest import PASSWORD, ApiProcess, login, raise_alarm
from tests.support import wait_until

# -- login --------------------------------------------------------------------------------------


def test_login_gives_a_token_and_me_tells_the_role(api: ApiProcess) -> None:
    with login(api, "staff-a") as client:
        me = client.get("/api/v1/auth/me").json()
    assert me["role"] == "staff"
    # staff of fa also see the family care bed fa supervises
    assert me["facilities"] == ["fa", "home-h"]


def test_wrong_password_and_unknown_user_get_the_same_answer(api: ApiProcess) -> None:
    wrong = httpx.post(
        f"{api.url}/api/v1/auth/token", data={"username": "staff-b", "password": "nope-nope-nope"}
    )
    ghost = httpx.post(
        f"{api.url}/api/v1/auth/token", data={"username": "ghost", "password": "nope-nope-nope"}
    )
    assert wrong.status_code == ghost.status_code == 401
    assert wrong.json() == ghost.json()


def test_failed_logins_are_rate_limited_per_username(api: ApiProcess) -> None:
    codes = [
        httpx.post(
            f"{api.url}/api/v1/auth/token", data={"username": "victim", "password": f"wrong-{i}"}
        ).status_code
        for i in range(6)
    ]
    assert codes == [401] * 5 + [429]
    # even the right password is refused from there until the window passes ...
    right = httpx.post(f"{api.url}/api/v1/auth/token", data={"username": "victim", "password": PASSWORD})
    assert right.status_code == 429
    assert int(right.headers["Retry-After"]) > 0
    # ... but the stranger cannot lock the account out everywhere: from another client (as
    # a proxy on this host reports it) the right password still works
    elsewhere = httpx.post(
        f"{api.url}/api/v1/auth/token",
        data={"username": "victim", "password": PASSWORD},
        headers={"X-Forwarded-For": "10.0.0.7"},
    )
    assert elsewhere.status_code == 200


def test_parallel_guesses_cannot_outrun_the_limit(api: ApiProcess) -> None:
    def guess(i: int) -> int:
        return httpx.post(
            f"{api.url}/api/v1/auth/token",
            data={"username": "ghost-parallel", "password": f"guess-{i}"},
            headers={"X-Forwarded-For": "10.0.0.99"},
            timeout=60,
        ).status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        codes = list(pool.map(guess, range(24)))
    assert codes.count(401) == 5, codes
    assert codes.count(429) == 19, codes


def test_login_from_another_sites_page_is_refused(api: ApiProcess) -> None:
    form = {"username": "staff-a", "password": PASSWORD}
    for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        assert httpx.post(f"{api.url}/api/v1/auth/token", data=form, headers=headers).status_code == 403
        assert httpx.post(f"{api.url}/login", data=form, headers=headers).status_code == 403
    same = httpx.post(f"{api.url}/api/v1/auth/token", data=form, headers={"Origin": api.url})
    assert same.status_code == 200


def test_no_token_an_unknown_one_and_an_expired_one_are_401(api: ApiProcess, api_db: str) -> None:
    assert httpx.get(f"{api.url}/api/v1/alarms").status_code == 401
    assert (
        httpx.get(f"{api.url}/api/v1/alarms", headers={"Authorization": "Bearer forged"}).status_code == 401
    )
    with login(api, "staff-b") as client:
        assert client.get("/api/v1/alarms").status_code == 200
        token = client.headers["Authorization"].removeprefix("Bearer ")
        with psycopg.connect(api_db, autocommit=True) as conn:
            conn.execute(
                "UPDATE sessions SET expires_at = now() - interval '1 second' WHERE token_sha256 = %s",
                (hashlib.sha256(token.encode()).digest(),),
            )
        assert client.get("/api/v1/alarms").status_code == 401


def test_passwords_are_stored_as_argon2id(api_db: str) -> None:
    with psycopg.connect(api_db) as conn:
        hashes = [r[0] for r in conn.execute("SELECT password_hash FROM accounts").fetchall()]
    assert hashes and all(h.startswith("$argon2id$") for h in hashes)
    assert not any(PASSWORD in h for h in hashes)


# -- request bodies -------------------------------------------------------------------------------

LIMIT = 64 * 1024  # ANKANG_MAX_BODY_BYTES by default


def _raw_request(api: ApiProcess, head: str, parts: list[bytes]) -> tuple[int, bytes, float]:
    """Send a request head and some body over a bare socket, then read the answer: (status,
    the answer's body, seconds until it arrived). The socket gives up after 10 s, so a server
    that waited for the rest of a body it was promised fails the test instead of hanging."""
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as sock:
        sock.sendall(head.encode())
        for part in parts:
            try:
                sock.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break  # refused while still sending: the answer is waiting
        sent = time.monotonic()
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"the connection closed without an answer: {data!r}"
            data += chunk
        elapsed = time.monotonic() - sent
        head_bytes, _, body = data.partition(b"\r\n\r\n")
        lines = head_bytes.decode().split("\r\n")
        fields = dict(line.lower().split(": ", 1) for line in lines[1:])
        while len(body) < int(fields.get("content-length", "0")):
            chunk = sock.recv(65536)
            assert chunk, f"the connection closed within the answer: {data!r}"
            body += chunk
    return int(lines[0].split()[1]), body, elapsed


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/api/v1/auth/token", "application/x-www-form-urlencoded"),
        ("/login", "application/x-www-form-urlencoded"),
        # an authenticated route, without credentials: the size is refused before the 401
        ("/api/v1/alarms/1/ack", "application/json"),
    ],
)
def test_a_body_declared_too_large_is_413_before_it_is_read(
    api: ApiProcess, path: str, content_type: str
) -> None:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {16 * 1024 * 1024}\r\n\r\n"
    )
    # 1 KiB of the promised 16 MiB: the answer can only come if nobody waits for the rest
    status, body, elapsed = _raw_request(api, head, [b"a" * 1024])
    assert status == 413
    assert "larger than" in json.loads(body)["detail"]
    assert elapsed < 5


def test_an_authenticated_route_refuses_a_large_body_of_a_logged_in_caller(
    api: ApiProcess, clients: dict[str, httpx.Client]
) -> None:
    response = clients["staff-a"].post("/api/v1/contacts", content=b"{" + b" " * (LIMIT + 1) + b"}")
    assert response.status_code == 413


@pytest.mark.parametrize("path", ["/api/v1/auth/token", "/api/v1/alarms/1/ack"])
def test_a_chunked_body_is_cut_off_at_the_limit(api: ApiProcess, path: str) -> None:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"a" * 8192
    # twice the limit, and no final chunk: only counting as it streams can answer this
    parts = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * (2 * LIMIT // len(chunk))
    status, body, elapsed = _raw_request(api, head, parts)
    assert status == 413
    assert "larger than" in json.loads(body)["detail"]
    assert elapsed < 5


def test_a_body_within_the_limit_is_read_as_before(api: ApiProcess) -> None:
    form = {"username": "staff-a", "password": PASSWORD, "padding": "x" * (LIMIT - 200)}
    assert httpx.post(f"{api.url}/api/v1/auth/token", data=form).status_code == 200


# -- scope --------------------------------------------------------------------------------------


def test_each_role_sees_only_its_facilities(clients: dict[str, httpx.Client]) -> None:
    ids = {name: [f["id"] for f in c.get("/api/v1/facilities").json()] for name, c in clients.items()}
    assert ids["admin"] == ["fa", "fb", "home-h"]
    assert ids["staff-a"] == ["fa", "home-h"]
    assert ids["staff-b"] == ["fb"]
    assert ids["reg-east"] == ["fa", "home-h"]
    assert ids["family-a1"] == ["fa"]


def test_another_tenants_ids_are_404_like_unknown_ones(clients: dict[str, httpx.Client], api_db: str) -> None:
    alarm_b = raise_alarm(api_db, "sos", facility="fb", room="201", resident="RB1", device="bed-b1")
    staff_a = clients["staff-a"]
    for path in (
        "/api/v1/facilities/fb",
        "/api/v1/residents/RB1",
        "/api/v1/devices/bed-b1",
        f"/api/v1/alarms/{alarm_b}",
        f"/api/v1/alarms/{alarm_b}/events",
    ):
        foreign = staff_a.get(path)
        assert foreign.status_code == 404, path
    unknown = staff_a.get("/api/v1/facilities/nowhere")
    assert unknown.status_code == 404
    assert staff_a.post(f"/api/v1/alarms/{alarm_b}/ack", json={}).status_code == 404
    assert clients["staff-b"].get(f"/api/v1/alarms/{alarm_b}").status_code == 200
    with psycopg.connect(api_db) as conn:
        assert conn.execute("SELECT state FROM alarms WHERE id = %s", (alarm_b,)).fetchone() == ("open",)


def test_a_family_sees_only_its_relative(clients: dict[str, httpx.Client], api_db: str) -> None:
    own = raise_alarm(api_db, "bed_exit", facility="fa", room="101", resident="RA1", device="bed-a1")
    neighbour = raise_alarm(api_db, "fall", facility="fa", resident="RA2", device="watch-a2")
    fire_fa = raise_alarm(api_db, "fire", facility="fa", room="101", device="smoke-a")
    family = clients["family-a1"]
    assert [r["id"] for r in family.get("/api/v1/residents").json()] == ["RA1"]
    assert family.get("/api/v1/residents/RA1").status_code == 200
    assert family.get("/api/v1/residents/RA2").status_code == 404
    seen = {a["id"] for a in family.get("/api/v1/alarms").json()}
    assert own in seen
    assert neighbour not in seen and fire_fa not in seen
    assert family.get(f"/api/v1/alarms/{neighbour}").status_code == 404
    # a family reads but does not act
    assert family.post(f"/api/v1/alarms/{own}/ack", json={}).status_code == 403
    assert family.get("/api/v1/facilities/fa").status_code == 403


def test_a_family_of_a_home_bed_sees_the_fire_in_that_home(
    clients: dict[str, httpx.Client], api_db: str
) -> None:
    fire_home = raise_alarm(api_db, "fire", facility="home-h", room="bedroom", device="smoke-h")
    assert fire_home in {a["id"] for a in clients["family-h"].get("/api/v1/alarms").json()}
    assert fire_home not in {a["id"] for a in clients["family-a1"].get("/api/v1/alarms").json()}


def test_a_regulator_reads_records_but_no_raw_vitals(clients: dict[str, httpx.Client], api_db: str) -> None:
    vitals = raise_alarm(api_db, "vitals", facility="fa", room="101", resident="RA1", device="bed-a1")
    reg = clients["reg-east"]
    listed = {a["id"]: a for a in reg.get("/api/v1/alarms").json()}
    assert vitals in listed
    assert listed[vitals]["evidence"] == {}  # detection details can carry vital signs
    # nor who the alarm was about
    assert listed[vitals]["resident_id"] is None
    assert listed[vitals]["resident_name"] is None
    assert listed[vitals]["subject"] is None
    assert listed[vitals]["bed_id"] is None
    assert "王一" not in reg.get(f"/api/v1/alarms/{vitals}").text
    assert reg.get(f"/api/v1/alarms/{vitals}/evidence").status_code == 403
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert reg.get("/api/v1/devices/bed-a1/readings", params={"since": since}).status_code == 403
    assert reg.get("/api/v1/residents").status_code == 403
    assert reg.post(f"/api/v1/alarms/{vitals}/ack", json={}).status_code == 403
    beds = [b for room in reg.get("/api/v1/facilities/fa").json()["room_list"] for b in room["beds"]]
    assert beds and all(b["resident_name"] is None for b in beds)
    # the west district is not this regulator's
    assert reg.get("/api/v1/facilities/fb").status_code == 404


# -- acting on alarms ------------------------------------------------------------------------------


def test_acknowledge_then_resolve_with_a_note_leaves_an_audit_trail(
    clients: dict[str, httpx.Client], api_db: str
) -> None:
    alarm = raise_alarm(api_db, "fall", facility="fa", resident="RA2", device="watch-a2")
    staff = clients["staff-a"]
    acked = staff.post(f"/api/v1/alarms/{alarm}/ack", json={"note": "on my way"})
    assert acked.status_code == 200, acked.text
    assert acked.json()["state"] == "acknowledged"
    assert acked.json()["acknowledged_by"] == "staff-a"
    again = staff.post(f"/api/v1/alarms/{alarm}/ack", json={})
    assert again.status_code == 409
    assert "already acknowledged" in again.json()["detail"]
    bad = staff.post(f"/api/v1/alarms/{alarm}/resolve", json={"resolution": "shrug"})
    assert bad.status_code == 422
    long_note = staff.post(
        f"/api/v1/alarms/{alarm}/resolve", json={"resolution": "real_incident", "note": "x" * 5000}
    )
    assert long_note.status_code == 422
    done = staff.post(
        f"/api/v1/alarms/{alarm}/resolve", json={"resolution": "real_incident", "note": "helped up"}
    )
    assert done.status_code == 200
    assert done.json()["state"] == "resolved"
    trail = staff.get(f"/api/v1/alarms/{alarm}/events").json()
    actions = [(e["action"], e["actor"], e["channel"], e["note"]) for e in trail]
    assert ("acknowledged", "staff-a", "api", "on my way") in actions
    assert ("resolved", "staff-a", "api", "helped up") in actions
    assert alarm not in {a["id"] for a in staff.get("/api/v1/alarms").json()}
    assert alarm in {a["id"] for a in staff.get("/api/v1/alarms", params={"state": "resolved"}).json()}


def test_alarms_are_listed_most_urgent_first(clients: dict[str, httpx.Client], api_db: str) -> None:
    raise_alarm(api_db, "low_battery", facility="fb", room="201", device="smoke-b", level="warning")
    raise_alarm(api_db, "fire", facility="fb", room="201", device="smoke-b")
    listed = clients["staff-b"].get("/api/v1/alarms").json()
    ranks = [{"high": 0, "medium": 1, "low": 2}[a["priority"]] for a in listed]
    assert ranks == sorted(ranks)
    assert listed[0]["type"] in ("fire", "sos")


def test_evidence_of_a_fall_is_the_acceleration_trace(clients: dict[str, httpx.Client], api_db: str) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=20)
    with psycopg.connect(api_db, autocommit=True) as conn:
        for i in range(4):
            acc = np.zeros((50, 3), "<f4")
            acc[:, 2] = 1.0
            if i == 2:
                acc[10, 2] = 3.5  # the impact
            conn.execute(
                "INSERT INTO waveforms (device_id, ts, seq, rate_hz, n, acc) VALUES (%s, %s, %s, 50, 50, %s)",
                ("watch-a2", t0 + timedelta(seconds=i), 9000 + i, acc.tobytes()),
            )
    alarm = raise_alarm(
        api_db,
        "fall",
        facility="fa",
        resident="RA2",
        device="watch-a2",
        t=t0 + timedelta(seconds=2),
        window=(t0, t0 + timedelta(seconds=4)),
    )
    evidence = clients["staff-a"].get(f"/api/v1/alarms/{alarm}/evidence").json()
    assert evidence["kind"] == "acceleration"
    (series,) = evidence["series"]
    assert len(series["values"]) == 200
    assert max(series["values"]) == pytest.approx(3.5)
    # the family of that resident is not this family
    assert clients["family-a1"].get(f"/api/v1/alarms/{alarm}/evidence").status_code == 404


def test_evidence_of_a_fire_is_the_rooms_curves(clients: dict[str, httpx.Client], api_db: str) -> None:
    t0 = datetime.now(UTC) - timedelta(minutes=3)
    with psycopg.connect(api_db, autocommit=True) as conn:
        for i in range(12):
            ts = t0 + timedelta(seconds=10 * i)
            conn.execute("INSERT INTO readings VALUES ('smoke-h', %s, 'temp_c', %s)", (ts, 22.0 + 4 * i))
            conn.execute("INSERT INTO readings VALUES ('smoke-h', %s, 'co_ppm', %s)", (ts, 5.0 * i))
    alarm = raise_alarm(
        api_db,
        "fire",
        facility="home-h",
        room="bedroom",
        device="smoke-h",
        window=(t0, t0 + timedelta(minutes=2)),
    )
    evidence = clients["staff-a"].get(f"/api/v1/alarms/{alarm}/evidence").json()
    metrics = {s["metric"]: s["values"] for s in evidence["series"]}
    assert set(metrics) == {"temp_c", "co_ppm"}
    assert metrics["temp_c"][0] == 22.0 and metrics["temp_c"][-1] == 22.0 + 4 * 11


# -- readings --------------------------------------------------------------------------------------


def test_readings_raw_and_bucketed_in_the_facility_time_zone(
    clients: dict[str, httpx.Client], api_db: str
) -> None:
    # 2026-03-01 23:30 to 00:30 in Shanghai (UTC+8): two local days, two hour buckets
    start = datetime(2026, 3, 1, 15, 30, tzinfo=UTC)
    with psycopg.connect(api_db, autocommit=True) as conn:
        for i in range(60):
            conn.execute(
                "INSERT INTO readings VALUES ('bed-a1', %s, 'hr_bpm', %s)",
                (start + timedelta(minutes=i), 60.0 + (i >= 30) * 10),
            )
    staff = clients["staff-a"]
    params = {
        "since": start.isoformat(),
        "until": (start + timedelta(hours=1)).isoformat(),
        "metric": "hr_bpm",
    }
    raw = staff.get("/api/v1/devices/bed-a1/readings", params=params).json()
    assert len(raw) == 60
    hourly = staff.get("/api/v1/devices/bed-a1/readings", params={**params, "bucket": "1h"}).json()
    assert [(p["value"], p["n"]) for p in hourly] == [(60.0, 30), (70.0, 30)]
    daily = staff.get("/api/v1/devices/bed-a1/readings", params={**params, "bucket": "1d"}).json()
    assert [datetime.fromisoformat(p["ts"]).astimezone(UTC).hour for p in daily] == [
        16,
        16,
    ]  # local midnights
    # the family sees its relative's bed, not another
    assert clients["family-a1"].get("/api/v1/devices/bed-a1/readings", params=params).status_code == 200
    assert clients["family-a1"].get("/api/v1/devices/bed-b1/readings", params=params).status_code == 404


def test_bad_reading_queries_are_422(clients: dict[str, httpx.Client]) -> None:
    staff = clients["staff-a"]
    now = datetime.now(UTC)
    cases = [
        {"since": "yesterday"},
        {"since": now.replace(tzinfo=None).isoformat()},
        {"since": now.isoformat(), "until": (now - timedelta(hours=1)).isoformat()},
        {"since": (now - timedelta(days=400)).isoformat()},
        {"since": now.isoformat(), "bucket": "7m"},
        {"since": now.isoformat(), "metric": "DROP TABLE"},
    ]
    for params in cases:
        response = staff.get("/api/v1/devices/bed-a1/readings", params=params)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["detail"]


# -- the live stream ----------------------------------------------------------------------------------


class StreamReader:
    """Reads an SSE stream in a thread and keeps the alarm events."""

    def __init__(self, api: ApiProcess, client: httpx.Client) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.ready = threading.Event()
        self._client = httpx.Client(base_url=api.url, headers=dict(client.headers), timeout=None)  # noqa: S113  (a stream read until the test ends)
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._read()
        except httpx.HTTPError:
            if not self._stop:
                raise

    def _read(self) -> None:
        with self._client.stream("GET", "/api/v1/alarms/stream") as response:
            assert response.status_code == 200
            event = ""
            for line in response.iter_lines():
                if self._stop:
                    return
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    if event == "ready":
                        self.ready.set()
                    self.events.append((event, json.loads(line[6:])))

    def alarm_ids(self) -> set[int]:
        return {data["id"] for event, data in list(self.events) if event == "alarm"}

    def close(self) -> None:
        self._stop = True
        self._client.close()


def test_the_stream_delivers_changes_within_scope_only(
    api: ApiProcess, clients: dict[str, httpx.Client], api_db: str
) -> None:
    east = StreamReader(api, clients["staff-a"])
    west = StreamReader(api, clients["staff-b"])
    family = StreamReader(api, clients["family-a1"])
    try:
        assert east.ready.wait(10) and west.ready.wait(10) and family.ready.wait(10)
        sos_a = raise_alarm(api_db, "sos", facility="fa", room="101", resident="RA1", device="bed-a1")
        sos_b = raise_alarm(api_db, "sos", facility="fb", room="201", resident="RB1", device="bed-b1")
        wait_until(
            lambda: sos_a in east.alarm_ids() and sos_b in west.alarm_ids(), 10, "both alarms streamed"
        )
        wait_until(lambda: sos_a in family.alarm_ids(), 10, "the family's alarm streamed")
        # an acknowledgement is a change too
        assert clients["staff-a"].post(f"/api/v1/alarms/{sos_a}/ack", json={}).status_code == 200
        wait_until(
            lambda: any(
                e == "alarm" and d["id"] == sos_a and d["state"] == "acknowledged" for e, d in east.events
            ),
            10,
            "the acknowledgement streamed",
        )
        # after the west's own alarm arrived, the east's is certainly not on its way there
        assert sos_a not in west.alarm_ids()
        assert sos_b not in east.alarm_ids()
        assert sos_b not in family.alarm_ids()
    finally:
        for reader in (east, west, family):
            reader.close()


def test_a_regulator_reads_what_happened_and_when_but_no_notes_or_names(
    api: ApiProcess, clients: dict[str, httpx.Client], api_db: str
) -> None:
    staff, reg = clients["staff-a"], clients["reg-east"]
    stream = StreamReader(api, reg)
    try:
        assert stream.ready.wait(10)
        alarm = raise_alarm(api_db, "vitals", facility="fa", room="101", resident="RA1", device="bed-a1")
        note = "王一 心率 131, settled"
        assert staff.post(f"/api/v1/alarms/{alarm}/ack", json={"note": note}).status_code == 200
        wait_until(
            lambda: any(
                e == "alarm" and d["id"] == alarm and d["state"] == "acknowledged" for e, d in stream.events
            ),
            10,
            "the acknowledgement streamed to the regulator",
        )
        streamed = [d for e, d in list(stream.events) if e == "alarm" and d["id"] == alarm]
    finally:
        stream.close()
    assert all(d["acknowledged_by"] is None and d["resolved_by"] is None for d in streamed)
    done = staff.post(f"/api/v1/alarms/{alarm}/resolve", json={"resolution": "real_incident", "note": note})
    assert done.status_code == 200
    full = staff.get(f"/api/v1/alarms/{alarm}/events").json()
    assert [e["note"] for e in full if e["action"] == "acknowledged"] == [note]  # staff still read it
    answer = reg.get(f"/api/v1/alarms/{alarm}/events")
    assert answer.status_code == 200
    trail = answer.json()
    # what happened, when and how, in the same order ...
    assert [(e["at"], e["action"], e["channel"]) for e in trail] == [
        (e["at"], e["action"], e["channel"]) for e in full
    ]
    # ... but not what a nurse wrote, who did it, or what the system noted about it
    assert all(e["note"] is None and e["actor"] == "" and e["detail"] == {} for e in trail)
    for path in ("", "/events", "/deliveries"):
        body = reg.get(f"/api/v1/alarms/{alarm}{path}").text
        assert "心率" not in body and "王一" not in body and "staff-a" not in body, path
    listed = {a["id"]: a for a in reg.get("/api/v1/alarms", params={"state": "resolved"}).json()}
    assert listed[alarm]["acknowledged_by"] is None and listed[alarm]["resolved_by"] is None
    assert listed[alarm]["acknowledged_at"] is not None and listed[alarm]["resolution"] == "real_incident"


# -- pages' cookie sessions ------------------------------------------------------------------------


def test_a_cookie_session_needs_the_csrf_header_to_act(api: ApiProcess, api_db: str) -> None:
    alarm = raise_alarm(api_db, "sos", facility="fa", room="101", resident="RA2", device="watch-a2")
    with httpx.Client(base_url=api.url) as browser:
        token = browser.post("/api/v1/auth/token", data={"username": "staff-a", "password": PASSWORD}).json()
        assert "ankang_session" in browser.cookies
        assert browser.get(f"/api/v1/alarms/{alarm}").status_code == 200  # reading needs no header
        forged = browser.post(f"/api/v1/alarms/{alarm}/ack", json={})
        assert forged.status_code == 403
        ok = browser.post(
            f"/api/v1/alarms/{alarm}/ack", json={}, headers={"X-CSRF-Token": token["csrf_token"]}
        )
        assert ok.status_code == 200


# -- contacts and escalation policies ------------------------------------------------------------------


def test_contacts_and_policies_are_managed_per_facility(clients: dict[str, httpx.Client]) -> None:
    staff = clients["staff-a"]
    made = staff.post(
        "/api/v1/contacts",
        json={
            "facility_id": "fa",
            "name": "夜班护士",
            "role": "care_worker",
            "url": "json://127.0.0.1:9/hook",
        },
    )
    assert made.status_code == 201, made.text
    family = staff.post(
        "/api/v1/contacts",
        json={
            "facility_id": "fa",
            "name": "王一家属",
            "role": "family",
            "url": "mailto://a@example.org",
            "resident_id": "RA1",
            "language": "en",
        },
    )
    assert family.status_code == 201
    assert {c["name"] for c in staff.get("/api/v1/contacts", params={"facility": "fa"}).json()} >= {
        "夜班护士",
        "王一家属",
    }
    # another tenant's facility or resident is unknown; a family contact needs its resident
    assert (
        staff.post(
            "/api/v1/contacts",
            json={"facility_id": "fb", "name": "x", "role": "care_worker", "url": "json://h/x"},
        ).status_code
        == 404
    )
    assert (
        staff.post(
            "/api/v1/contacts",
            json={
                "facility_id": "fa",
                "name": "x",
                "role": "family",
                "url": "json://h/x",
                "resident_id": "RB1",
            },
        ).status_code
        == 404
    )
    assert (
        staff.post(
            "/api/v1/contacts", json={"facility_id": "fa", "name": "x", "role": "family", "url": "json://h/x"}
        ).status_code
        == 422
    )
    assert clients["staff-b"].delete(f"/api/v1/contacts/{made.json()['id']}").status_code == 404
    assert staff.delete(f"/api/v1/contacts/{made.json()['id']}").status_code == 204

    builtin = staff.get("/api/v1/facilities/fa/policies").json()
    assert builtin == [{**builtin[0], "alarm_type": "*", "builtin": True}]
    steps = [
        {"after_s": 0, "roles": ["care_worker"]},
        {"after_s": 30, "roles": ["supervisor"], "remind_every_s": 120},
    ]
    put = staff.put("/api/v1/facilities/fa/policies/fall", json=steps)
    assert put.status_code == 200, put.text
    stored = {p["alarm_type"]: p for p in staff.get("/api/v1/facilities/fa/policies").json()}
    assert stored["fall"]["steps"][1]["after_s"] == 30 and not stored["fall"]["builtin"]
    backwards = [{"after_s": 60, "roles": ["care_worker"]}, {"after_s": 0, "roles": ["supervisor"]}]
    assert staff.put("/api/v1/facilities/fa/policies/fall", json=backwards).status_code == 422
    assert staff.put("/api/v1/facilities/fa/policies/meteor", json=steps).status_code == 422
    assert staff.put("/api/v1/facilities/fb/policies/fall", json=steps).status_code == 404
    assert clients["reg-east"].get("/api/v1/facilities/fa/policies").status_code == 403


def test_open_streams_hold_no_database_connection(api: ApiProcess, clients: dict[str, httpx.Client]) -> None:
    # more consoles than the pool has connections (ANKANG_DB_POOL_MAX defaults to 10)
    readers = [StreamReader(api, clients["staff-a"]) for _ in range(14)]
    try:
        assert all(r.ready.wait(15) for r in readers)
        started = time.monotonic()
        assert clients["staff-a"].get("/api/v1/alarms").status_code == 200
        assert time.monotonic() - started < 5
    finally:
        for reader in readers:
            reader.close()


def test_a_stream_ends_when_its_session_does(api: ApiProcess, api_db: str) -> None:
    with login(api, "family-a1") as family:
        reader = StreamReader(api, family)
        try:
            assert reader.ready.wait(10)
            assert family.delete("/api/v1/auth/token").status_code == 204
            time.sleep(1.5)  # a stream looks at its session again at most a second before it sends
            alarm = raise_alarm(api_db, "sos", facility="fa", room="101", resident="RA1", device="bed-a1")
            reader._thread.join(20)
            assert not reader._thread.is_alive(), "the stream outlived its session"
            assert alarm not in reader.alarm_ids()
        finally:
            reader.close()
