"""Replay recorded acceleration through the hub's fall detector (``ankang replay``).

From CSV files
    Columns ``t,ax,ay,az`` (seconds, g), optionally followed by ``gx,gy,gz`` (deg/s). A header
    row naming the columns may come first; without one, 3 or 6 columns mean there is no ``t``
    and ``--rate`` gives the timing. A regular ``t`` sets the rate itself; an irregular one is
    interpolated onto a regular grid at ``--rate`` (or its median rate). Holes longer than
    0.5 s stay holes. Many files are spread over worker processes that each load the model
    once; a bad file is reported on stderr and the others go on.

From the database
    The ``waveforms`` rows of one device between two times, in time order, with the
    placement from the device registry.

Either way the samples go to the same ``FallDetector`` the hub runs, one second at a time,
and each detection is one JSON line on stdout.
"""

from __future__ import annotations

import io
import math
import multiprocessing
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson

from hub.detectors.fall import MAX_BRIDGE_S, PLACEMENTS, FallDetector, FallHit, FallModel, load_model

Array = npt.NDArray[np.float64]

MAX_FILE_BYTES: Final = 64 * 1024 * 1024  # about 2 h of 200 Hz six-axis samples
MIN_RATE_HZ: Final = 10.0
MAX_RATE_HZ: Final = 1000.0
IRREGULAR: Final = 0.1  # sample intervals further than 10 % from the median are irregular
_ACC: Final = ("ax", "ay", "az")
_GYRO: Final = ("gx", "gy", "gz")


class ReplayError(Exception):
    """A file or a stored stream cannot be replayed; the message says why."""


@dataclass(frozen=True, slots=True)
class Stream:
    """Samples ready for the detector: regular segments of (t0, rate, acc, gyro)."""

    segments: tuple[tuple[float, float, Array, Array | None], ...]


# -- CSV ----------------------------------------------------------------------------------


def read_csv(path: Path, rate: float | None = None, max_bytes: int = MAX_FILE_BYTES) -> Stream:
    """Parse and check one CSV file."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ReplayError(f"file of {size} bytes is larger than the {max_bytes}-byte limit")
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ReplayError(f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ReplayError("not UTF-8 text") from None
    # (line number, text) of every line that is not blank or a # comment
    lines = [(i + 1, line) for i, line in enumerate(text.splitlines()) if line.strip() and line[0] != "#"]
    if not lines:
        raise ReplayError("no samples")
    names = [c.strip().lower() for c in lines[0][1].split(",")]
    header = not all(_is_number(c) for c in names)
    body = lines[1:] if header else lines
    if not body:
        raise ReplayError("no samples")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = np.loadtxt(
                io.StringIO("\n".join(x for _, x in body)), delimiter=",", ndmin=2, comments=None
            )
    except ValueError as exc:
        raise ReplayError(f"malformed rows: {_row_note(str(exc), body)}") from None
    columns = _columns(names if header else None, data.shape[1])
    if not np.isfinite(data).all():
        row = int(np.flatnonzero(~np.isfinite(data).all(axis=1))[0])
        raise ReplayError(f"line {body[row][0]}: NaN or infinite value")
    acc = data[:, [columns[c] for c in _ACC]]
    gyro = data[:, [columns[c] for c in _GYRO]] if all(c in columns for c in _GYRO) else None
    if rate is not None and not MIN_RATE_HZ <= rate <= MAX_RATE_HZ:
        raise ReplayError(f"--rate must be {MIN_RATE_HZ:g}-{MAX_RATE_HZ:g} Hz")
    if "t" not in columns:
        if rate is None:
            raise ReplayError("no t column: give --rate")
        return Stream(((0.0, rate, acc, gyro),))
    return _timed(data[:, columns["t"]], acc, gyro, rate, [n for n, _ in body])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _row_note(message: str, body: list[tuple[int, str]]) -> str:
    """numpy's parse error, with the line of the file instead of its row count."""
    head, _, tail = message.partition(" at row ")
    digits = "".join(ch for ch in tail.split(",")[0].split(";")[0] if ch.isdigit())
    if not digits:
        return message
    # numpy counts from 0 for a bad value and from 1 for a changed number of columns
    row = int(digits) - (1 if "number of columns changed" in head else 0)
    return f"line {body[row][0]}: {head}" if 0 <= row < len(body) else message


def _columns(names: list[str] | None, width: int) -> dict[str, int]:
    if names is None:
        layouts = {3: _ACC, 4: ("t", *_ACC), 6: (*_ACC, *_GYRO), 7: ("t", *_ACC, *_GYRO)}
        if width not in layouts:
            raise ReplayError(f"{width} columns without a header; expected t,ax,ay,az[,gx,gy,gz]")
        return {name: i for i, name in enumerate(layouts[width])}
    if len(names) != width:
        raise ReplayError(f"the header names {len(names)} columns but rows have {width}")
    columns = {name: i for i, name in enumerate(names)}
    missing = [c for c in _ACC if c not in columns]
    if missing:
        raise ReplayError(f"the header lacks {', '.join(missing)}")
    return columns


def _timed(t: Array, acc: Array, gyro: Array | None, rate: float | None, line_of: list[int]) -> Stream:
    steps = np.diff(t)
    if len(steps) and not (steps > 0).all():
        row = int(np.flatnonzero(steps <= 0)[0]) + 1
        raise ReplayError(f"line {line_of[row]}: t does not increase")
    if len(t) < 2:
        if rate is None:
            raise ReplayError("a single sample: give --rate")
        return Stream(((float(t[0]), rate, acc, gyro),))
    segments = []
    breaks = np.flatnonzero(steps > MAX_BRIDGE_S) + 1
    for lo, hi in zip((0, *breaks), (*breaks, len(t)), strict=True):
        seg_t, seg_a = t[lo:hi], acc[lo:hi]
        seg_g = None if gyro is None else gyro[lo:hi]
        if len(seg_t) < 2:
            continue  # one sample between two holes explains nothing
        median = float(np.median(np.diff(seg_t)))
        own_rate = 1.0 / median
        regular = bool((np.abs(np.diff(seg_t) - median) <= IRREGULAR * median).all())
        if regular:
            if not MIN_RATE_HZ <= own_rate <= MAX_RATE_HZ:
                raise ReplayError(f"t gives {own_rate:.3g} Hz; expected {MIN_RATE_HZ:g}-{MAX_RATE_HZ:g} Hz")
            segments.append((float(seg_t[0]), own_rate, seg_a, seg_g))
            continue
        grid_rate = rate or own_rate
        if not MIN_RATE_HZ <= grid_rate <= MAX_RATE_HZ:
            raise ReplayError(f"irregular t at about {grid_rate:.3g} Hz: give --rate")
        grid = np.arange(seg_t[0], seg_t[-1], 1.0 / grid_rate)
        segments.append(
            (
                float(seg_t[0]),
                grid_rate,
                _interp(grid, seg_t, seg_a),
                None if seg_g is None else _interp(grid, seg_t, seg_g),
            )
        )
    if not segments:
        raise ReplayError("no stretch of two or more samples")
    return Stream(tuple(segments))


def _interp(grid: Array, t: Array, values: Array) -> Array:
    return np.column_stack([np.interp(grid, t, values[:, j]) for j in range(values.shape[1])])


def run(detector: FallDetector, stream: Stream) -> list[FallHit]:
    """Feed a stream in one-second blocks, as devices send it, then flush."""
    hits: list[FallHit] = []
    for t0, rate, acc, gyro in stream.segments:
        step = max(1, round(rate))
        for start in range(0, len(acc), step):
            g = None if gyro is None else gyro[start : start + step]
            hits.extend(detector.feed(t0 + start / rate, rate, acc[start : start + step], g))
    hits.extend(detector.flush())
    return hits


def _line(source: str, hit: FallHit, **extra: Any) -> str:
    record = {"source": source, "t": round(hit.t, 3), "kind": "fall", "confidence": round(hit.confidence, 4)}
    return orjson.dumps({**record, **extra}).decode()


def replay_file(
    model: FallModel, path: Path, placement: str = "waist", rate: float | None = None
) -> list[str]:
    """The JSON lines of one file's detections; ``ReplayError`` if the file is bad."""
    stream = read_csv(path, rate)
    return [_line(str(path), hit) for hit in run(FallDetector(model, placement), stream)]


_worker_model: FallModel | None = None


def _worker_init(model_path: str | None) -> None:
    global _worker_model  # noqa: PLW0603 - one model per worker process, loaded once
    _worker_model = load_model(Path(model_path) if model_path else None)


def _worker_task(task: tuple[str, str, float | None]) -> tuple[str, list[str], str | None]:
    path, placement, rate = task
    assert _worker_model is not None  # noqa: S101 - set by the initializer
    try:
        return path, replay_file(_worker_model, Path(path), placement, rate), None
    except ReplayError as exc:
        return path, [], str(exc)
    except Exception as exc:  # noqa: BLE001 - one odd file must not end a run of thousands
        return path, [], f"{type(exc).__name__}: {exc}"


def replay_files(
    paths: Sequence[Path],
    *,
    placement: str = "waist",
    rate: float | None = None,
    workers: int = 2,
    model: Path | None = None,
    out: Callable[[str], Any] = print,
    err: Callable[[str], Any] = print,
) -> int:
    """Replay files, printing detections with ``out`` and bad files with ``err``; returns failures."""
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {', '.join(PLACEMENTS)}")
    tasks = [(str(p), placement, rate) for p in paths]
    failed = 0

    def handle(result: tuple[str, list[str], str | None]) -> None:
        nonlocal failed
        path, lines, error = result
        for line in lines:
            out(line)
        if error is not None:
            failed += 1
            err(f"error: {path}: {error}")

    if workers <= 1 or len(tasks) <= 1:
        _worker_init(str(model) if model else None)
        for task in tasks:
            handle(_worker_task(task))
        return failed
    # spawn: a fresh interpreter per worker, so no thread or OpenMP state is inherited
    context = multiprocessing.get_context("spawn")
    chunk = max(1, min(64, math.ceil(len(tasks) / (workers * 8))))
    done: set[str] = set()
    try:
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=_worker_init,
            initargs=(str(model) if model else None,),
        ) as pool:
            for result in pool.map(_worker_task, tasks, chunksize=chunk):
                done.add(result[0])
                handle(result)
    except BrokenProcessPool:
        for path, _, _ in tasks:
            if path not in done:
                failed += 1
                err(f"error: {path}: a worker process died")
    return failed


# -- database -----------------------------------------------------------------------------


def _instant(text: str, name: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ReplayError(f"{name} is not an ISO 8601 time: {text!r}") from None
    if value.tzinfo is None:
        raise ReplayError(f"{name} needs a UTC offset, e.g. {text}+08:00 or {text}Z")
    return value


def replay_device(
    database_url: str,
    device_id: str,
    since: str | datetime,
    until: str | datetime | None = None,
    *,
    model: Path | None = None,
    placement: str | None = None,
) -> Iterator[str]:
    """Detections in one device's stored waveforms, as JSON lines with epoch-second ``t``.

    The placement comes from the registry; ``placement`` only fills in when it has none.
    """
    import psycopg

    start = since if isinstance(since, datetime) else _instant(since, "--since")
    end = (
        until
        if isinstance(until, datetime)
        else _instant(until, "--until")
        if until is not None
        else datetime.now(UTC)
    )
    source = f"device:{device_id}"
    try:
        with psycopg.connect(database_url) as conn:
            row = conn.execute("SELECT kind, placement FROM devices WHERE id = %s", (device_id,)).fetchone()
            if row is None:
                raise ReplayError(f"device {device_id} is not registered")
            detector = FallDetector(load_model(model), row[1] or placement or "waist")
            # a server-side cursor streams the rows, so a long range does not fill memory
            with conn.cursor(name="ankang_replay") as cur:
                cur.itersize = 1000
                cur.execute(
                    "SELECT ts, rate_hz, n, acc, gyro FROM waveforms"
                    " WHERE device_id = %s AND ts >= %s AND ts < %s ORDER BY ts, seq",
                    (device_id, start, end),
                )
                for ts, rate, n, acc_raw, gyro_raw in cur:
                    acc = _decode(acc_raw, n)
                    if acc is None:
                        continue  # the hub stores only validated blocks; skip a damaged one
                    gyro = _decode(gyro_raw, n) if gyro_raw is not None else None
                    for hit in detector.feed(ts.timestamp(), float(rate), acc, gyro):
                        yield _hit_line(source, hit)
            for hit in detector.flush():
                yield _hit_line(source, hit)
    except psycopg.Error as exc:
        raise ReplayError(f"database: {exc}") from None


def _decode(raw: bytes, n: int) -> npt.NDArray[np.float32] | None:
    flat = np.frombuffer(raw, dtype="<f4")
    if n <= 0 or flat.size != n * 3:
        return None
    return flat.reshape(n, 3)


def _hit_line(source: str, hit: FallHit) -> str:
    return _line(source, hit, time=datetime.fromtimestamp(hit.t, UTC).isoformat(timespec="milliseconds"))
