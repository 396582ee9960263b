"""Replay of CSV files and of stored waveforms through the hub's fall detector."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import psycopg
import pytest

from hub.detectors.fall import load_model
from lab.replay import ReplayError, read_csv, replay_device, replay_file, replay_files
from simulators.signals import WearableModel
from tests.conftest import run_cli


def _signal(rate, seconds, seed, fall=None, placement="waist"):
    wearer = WearableModel(placement, np.random.default_rng(seed), rate_hz=rate)
    if fall is not None:
        wearer.schedule_fall(*fall)
    acc = np.vstack([wearer.block(float(s)) for s in range(seconds)])
    return acc, (wearer.falls[0].impact if wearer.falls else None)


def _write(path, acc, rate, *, t0=0.0, header=True, with_t=True, gyro=None):
    cols = [acc]
    names = ["ax", "ay", "az"]
    if with_t:
        cols.insert(0, (t0 + np.arange(len(acc)) / rate)[:, None])
        names.insert(0, "t")
    if gyro is not None:
        cols.append(gyro)
        names += ["gx", "gy", "gz"]
    body = "\n".join(",".join(f"{v:.5f}" for v in row) for row in np.hstack(cols))
    path.write_text((",".join(names) + "\n" if header else "") + body + "\n")
    return path


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.mark.parametrize("rate", [20, 50, 200])
def test_a_simulated_fall_in_a_csv_is_found(tmp_path, model, rate):
    acc, impact = _signal(rate, 30, seed=1, fall=("forward", 12.0))
    path = _write(tmp_path / "fall.csv", acc, rate, t0=100.0)
    lines = [orjson.loads(line) for line in replay_file(model, path)]
    assert len(lines) == 1
    assert lines[0]["source"] == str(path)
    assert lines[0]["kind"] == "fall"
    assert 100.0 + impact - 1.0 <= lines[0]["t"] <= 100.0 + impact + 5.0
    assert 0.0 < lines[0]["confidence"] <= 1.0


def test_daily_living_only_finds_nothing(tmp_path, model):
    acc, _ = _signal(50, 600, seed=2, placement="wrist")
    path = _write(tmp_path / "adl.csv", acc, 50)
    assert replay_file(model, path, placement="wrist") == []


def test_layouts_without_header_or_time_and_with_gyro(tmp_path, model):
    acc, impact = _signal(100, 30, seed=3, fall=("sideways", 12.0))
    gyro = np.zeros_like(acc)
    plain = _write(tmp_path / "plain.csv", acc, 100, header=False)
    no_t = _write(tmp_path / "no_t.csv", acc, 100, with_t=False, gyro=gyro)
    for path, rate in ((plain, None), (no_t, 100.0)):
        (line,) = [orjson.loads(x) for x in replay_file(model, path, rate=rate)]
        assert impact - 1.0 <= line["t"] <= impact + 5.0
    with pytest.raises(ReplayError, match="--rate"):
        read_csv(no_t)


def test_irregular_time_is_put_on_a_grid(tmp_path, model):
    acc, impact = _signal(50, 30, seed=4, fall=("backward", 12.0))
    t = np.arange(len(acc)) / 50 + np.random.default_rng(0).uniform(-0.006, 0.006, len(acc))
    path = tmp_path / "jitter.csv"
    path.write_text(
        "t,ax,ay,az\n" + "\n".join(f"{a},{b},{c},{d}" for a, (b, c, d) in zip(t, acc, strict=True))
    )
    stream = read_csv(path)
    assert len(stream.segments) == 1
    (line,) = [orjson.loads(x) for x in replay_file(model, path)]
    assert impact - 1.0 <= line["t"] <= impact + 5.0


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("t,ax,ay,az\n0,0,0,1\n0.02,0,x,1\n", "line 3"),
        ("t,ax,ay,az\n0,0,0,1\n0.02,0,0\n", "line 3: the number of columns"),
        ("# a comment\n\nt,ax,ay,az\n0,0,0,1\n\n0.02,0,x,1\n", "line 6: could not convert"),
        ("t,ax,ay,az\n0,0,0,1\n0.02,0,nan,1\n", "line 3: NaN"),
        ("t,ax,ay,az\n0,0,0,1\n0,0,0,1\n", "does not increase"),
        ("ax,ay\n1,2\n", "lacks az"),
        ("1,2\n3,4\n", "2 columns"),
        ("", "no samples"),
        ("t,ax,ay,az\n", "no samples"),
    ],
)
def test_bad_files_say_why(tmp_path, content, reason):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ReplayError, match=reason):
        read_csv(path)


def test_bad_bytes_and_size(tmp_path):
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ReplayError, match="UTF-8"):
        read_csv(binary)
    big = tmp_path / "big.csv"
    big.write_text("t,ax,ay,az\n" + "0,0,0,1\n" * 100)
    with pytest.raises(ReplayError, match="larger"):
        read_csv(big, max_bytes=100)
    with pytest.raises(ReplayError, match="cannot read"):
        read_csv(tmp_path / "absent.csv")


def test_many_files_in_two_processes_with_a_bad_one(tmp_path):
    acc, impact = _signal(50, 30, seed=5, fall=("from_chair", 12.0))
    good = [_write(tmp_path / f"fall{i}.csv", acc, 50, t0=float(i)) for i in range(6)]
    bad = tmp_path / "bad.csv"
    bad.write_text("t,ax,ay,az\n0,0,0,1\n0.02,oops,0,1\n")
    out: list[str] = []
    err: list[str] = []
    failed = replay_files([*good[:3], bad, *good[3:]], workers=2, out=out.append, err=err.append)
    assert failed == 1
    assert len(err) == 1
    assert str(bad) in err[0]
    assert "line 3" in err[0]
    found = [orjson.loads(line) for line in out]
    assert sorted(f["source"] for f in found) == sorted(str(p) for p in good)
    for f in found:
        offset = float(f["source"].rsplit("fall", 1)[1].split(".")[0])
        assert offset + impact - 1.0 <= f["t"] <= offset + impact + 5.0


def test_the_command_line(tmp_path):
    acc, _ = _signal(50, 30, seed=6, fall=("slump", 12.0))
    good = _write(tmp_path / "fall.csv", acc, 50)
    bad = tmp_path / "bad.csv"
    bad.write_text("nothing here")
    proc = run_cli("replay", str(good), str(bad), "--placement", "waist", check=False)
    assert proc.returncode == 1
    assert [orjson.loads(line)["source"] for line in proc.stdout.splitlines()] == [str(good)]
    assert str(bad) in proc.stderr
    assert run_cli("replay", "--placement", "ankle", str(good), check=False).returncode == 2


def test_replay_of_stored_waveforms(database, model):
    rate = 50
    acc, impact = _signal(rate, 40, seed=7, fall=("sideways", 20.0), placement="wrist")
    start = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("INSERT INTO facilities (id) VALUES ('fac-1')")
        conn.execute(
            "INSERT INTO devices (id, kind, facility_id, heartbeat_s, placement)"
            " VALUES ('band-7', 'wearable', 'fac-1', 60, 'wrist')"
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO waveforms (device_id, ts, seq, rate_hz, n, acc, gyro)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [
                    (
                        "band-7",
                        start + timedelta(seconds=s),
                        s,
                        rate,
                        rate,
                        acc[s * rate : (s + 1) * rate].astype("<f4").tobytes(),
                        np.zeros((rate, 3), "<f4").tobytes() if s % 2 else None,
                    )
                    for s in reversed(range(40))  # stored in any order; replayed in time order
                ],
            )
    lines = [
        orjson.loads(x) for x in replay_device(database, "band-7", start.isoformat(), None, placement="chest")
    ]
    assert len(lines) == 1
    epoch = start.timestamp()
    assert lines[0]["source"] == "device:band-7"
    assert epoch + impact - 1.0 <= lines[0]["t"] <= epoch + impact + 5.0
    assert lines[0]["time"].startswith("2026-03-01T08:00:")
    later = (start + timedelta(seconds=30)).isoformat()
    assert list(replay_device(database, "band-7", later, None)) == []  # the fall is before the range
    with pytest.raises(ReplayError, match="not registered"):
        list(replay_device(database, "nobody", start.isoformat(), None))
    with pytest.raises(ReplayError, match="UTC offset"):
        list(replay_device(database, "band-7", "2026-03-01T08:00:00", None))
