"""Storage: the connection pool, numbered migrations, and the batch writer.

All SQL of the ingest path lives here. A batch is written in one transaction:

1. Rows go in with binary COPY straight into the hypertables, inside a savepoint. In the
   normal case every message is new, so this is as fast as the bare pipe.
2. If the savepoint hits the unique key on ``messages`` (a redelivery that the hub could
   not tell apart in advance), it is rolled back and the batch goes through temporary
   staging tables with ``INSERT ... ON CONFLICT DO NOTHING``, writing bodies only for the
   messages that were new. Either way a message is stored exactly once.
3. Quarantine records are copied in the same transaction, so a message is acknowledged
   only when whatever became of it is durable.
4. So are the detections the batch produced, the device health it changed and the quiet
   spells it ended. Detections are keyed (``detections.key``): a batch redelivered after a
   crash records the same detections once. A ``NOTIFY ankang_detections`` in the same
   transaction wakes the alert service the moment they are committed.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from types import TracebackType
from typing import Any, Final, Self

import psycopg
from psycopg import AsyncConnection, errors, sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from devices.contract import is_valid_device_id, printable
from hub.errors import MigrationError, StorageError

log = logging.getLogger(__name__)

Key = tuple[str, datetime, int]


@dataclass(slots=True)
class StoreBatch:
    """Rows for one transaction, already validated. Tuples follow the column lists below."""

    messages: list[tuple[str, datetime, int, str, datetime, int]] = field(default_factory=list)
    readings: list[tuple[str, datetime, int, str, float]] = field(default_factory=list)
    waveforms: list[tuple[str, datetime, int, float, int, bytes, bytes | None]] = field(default_factory=list)
    events: list[tuple[str, datetime, int, str, Jsonb | None]] = field(default_factory=list)
    statuses: list[tuple[str, datetime, int, str, str | None, int | None]] = field(default_factory=list)
    quarantine: list[QuarantineRow] = field(default_factory=list)
    dead_letters: list[DeadLetterRow] = field(default_factory=list)
    detections: list[DetectionRow] = field(default_factory=list)
    health: list[HealthRecord] = field(default_factory=list)
    gaps: list[tuple[str, datetime, float, int]] = field(default_factory=list)

    @property
    def findings(self) -> bool:
        return bool(self.detections or self.health or self.gaps)


# key, kind, level, t, subject, facility, room, resident, device, confidence, window start/end, detail
DetectionRow = tuple[
    str, str, str, datetime, str, str | None, str | None, str | None, str | None, float,
    datetime | None, datetime | None, Jsonb,
]  # fmt: skip
# device, online, since, last_seen, battery_low, tamper, fault, fault_since, stuck
HealthRecord = tuple[str, bool, datetime, datetime | None, bool, bool, bool, datetime | None, bool]


@dataclass(frozen=True, slots=True)
class StoredHealth:
    """A ``device_health`` row: what the hub resumes a device's health from."""

    device_id: str
    online: bool
    since: datetime
    last_seen: datetime | None
    battery_low: bool
    tamper: bool
    fault: bool
    fault_since: datetime | None
    stuck: bool


# received_at, topic, device, reason, payload excerpt, kind, payload size, payload SHA-256
QuarantineRow = tuple[datetime, str, str | None, str, bytes, str, int, bytes]
# received_at, topic, device, stage, attempts, reason, payload excerpt, payload size, SHA-256
DeadLetterRow = tuple[datetime, str, str | None, str, int, str, bytes, int, bytes]

# Quarantine and dead letters keep this much of a payload, with the size and hash of the whole:
# enough to see what a device sent, not a store for whatever it sends.
PAYLOAD_EXCERPT_BYTES: Final = 4096


def _excerpt(payload: bytes) -> tuple[bytes, int, bytes]:
    return payload[:PAYLOAD_EXCERPT_BYTES], len(payload), hashlib.sha256(payload).digest()


def quarantine_row(
    received_at: datetime, topic: str, device_id: str | None, reason: str, payload: bytes, kind: str
) -> QuarantineRow:
    """A quarantine record that the database can always take: printable text, valid ids,
    and a bounded excerpt of the payload."""
    excerpt, size, digest = _excerpt(payload)
    return (
        received_at,
        printable(topic, 300),
        device_id if device_id is not None and is_valid_device_id(device_id) else None,
        printable(reason, 500),
        excerpt,
        kind,
        size,
        digest,
    )


def dead_letter_row(
    received_at: datetime,
    topic: str,
    device_id: str | None,
    stage: str,
    attempts: int,
    reason: str,
    payload: bytes,
) -> DeadLetterRow:
    excerpt, size, digest = _excerpt(payload)
    return (
        received_at,
        printable(topic, 300),
        device_id if device_id is not None and is_valid_device_id(device_id) else None,
        stage,
        attempts,
        printable(reason, 500),
        excerpt,
        size,
        digest,
    )


@dataclass(frozen=True, slots=True)
class WriteResult:
    stored: int  # messages that were new
    redelivered: int  # messages already stored (dropped by the unique key)
    quarantined: int
    staged: bool  # whether the slow, conflict-tolerant path was needed


@dataclass(frozen=True)
class _Table:
    """Where one StoreBatch field goes. ``columns``/``types`` follow its tuples (and the
    staging table); a direct COPY keeps the tuple positions in ``direct`` (None: all)."""

    columns: str
    types: tuple[str, ...]
    direct: tuple[int, ...] | None = None

    @functools.cached_property
    def direct_columns(self) -> str:
        if self.direct is None:
            return self.columns
        names = [c.strip() for c in self.columns.split(",")]
        return ", ".join(names[i] for i in self.direct)

    @functools.cached_property
    def direct_types(self) -> tuple[str, ...]:
        return self.types if self.direct is None else tuple(self.types[i] for i in self.direct)

    @functools.cached_property
    def pick(self) -> Callable[[tuple[Any, ...]], tuple[Any, ...]] | None:
        return None if self.direct is None else operator.itemgetter(*self.direct)


# ``seq`` in readings only links a reading to its message in the staged path; the
# readings table itself has no seq column.
_TABLES: dict[str, _Table] = {
    "messages": _Table(
        "device_id, ts, seq, channel, received_at, worker",
        ("text", "timestamptz", "int8", "text", "timestamptz", "int2"),
    ),
    "readings": _Table(
        "device_id, ts, seq, metric, value",
        ("text", "timestamptz", "int8", "text", "float8"),
        direct=(0, 1, 3, 4),
    ),
    "waveforms": _Table(
        "device_id, ts, seq, rate_hz, n, acc, gyro",
        ("text", "timestamptz", "int8", "float4", "int4", "bytea", "bytea"),
    ),
    "events": _Table("device_id, ts, seq, event, detail", ("text", "timestamptz", "int8", "text", "jsonb")),
    "statuses": _Table(
        "device_id, ts, seq, state, fw, heartbeat_s", ("text", "timestamptz", "int8", "text", "text", "int4")
    ),
}
_QUARANTINE = _Table(
    "received_at, topic, device_id, reason, payload, kind, payload_size, payload_sha256",
    ("timestamptz", "text", "text", "text", "bytea", "text", "int4", "bytea"),
)
_DEAD_LETTERS = _Table(
    "received_at, topic, device_id, stage, attempts, reason, payload, payload_size, payload_sha256",
    ("timestamptz", "text", "text", "text", "int4", "text", "bytea", "int4", "bytea"),
)


class Database:
    """A pool of connections to PostgreSQL (with or without TimescaleDB).

    Use as ``async with Database(url) as db``. The pool reconnects by itself; callers
    retry an operation that failed with ``StorageUnavailable``.
    """

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 4, name: str = "ankang") -> None:
        self._url = url
        self._pool = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            open=False,
            name=name,
            configure=self._configure,
            # No check on every checkout (a round trip per batch): a broken connection fails
            # the write, the pool discards it, and the caller retries the batch.
            reconnect_timeout=24 * 3600,
            timeout=3,  # a write waits this long for a connection before the outage is reported
            kwargs={"application_name": name},
        )
        self._opened = False

    async def __aenter__(self) -> Self:
        if self._opened:
            raise StorageError("a Database cannot be reopened")
        self._opened = True
        await self._pool.open(wait=False)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._pool.close(timeout=5)

    @staticmethod
    async def _configure(conn: AsyncConnection[Any]) -> None:
        await conn.set_autocommit(True)

    def connection(self) -> Any:
        """``async with db.connection() as conn``: a pooled connection, in autocommit mode."""
        return self._pool.connection()

    async def timescaledb(self) -> bool:
        async with self.connection() as conn:
            cur = await conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
            return await cur.fetchone() is not None

    # -- ingest ------------------------------------------------------------------------

    async def last_positions(
        self, device_ids: Sequence[str], channels: Sequence[str] | None = None
    ) -> dict[str, tuple[int, datetime]]:
        """The newest stored (seq, ts) of each device, for devices the hub has not seen yet;
        with ``channels``, of those channels only (each ingest lane judges its own)."""
        if not device_ids:
            return {}
        async with self.connection() as conn:
            cur = await conn.execute(
                """
                SELECT d.id, m.seq, m.ts
                FROM unnest(%s::text[]) AS d(id)
                CROSS JOIN LATERAL (
                    SELECT seq, ts FROM messages
                    WHERE device_id = d.id AND (%s::text[] IS NULL OR channel = ANY(%s::text[]))
                    ORDER BY ts DESC, seq DESC LIMIT 1
                ) AS m
                """,
                (
                    list(device_ids),
                    None if channels is None else list(channels),
                    None if channels is None else list(channels),
                ),
            )
            return {row[0]: (int(row[1]), row[2]) for row in await cur.fetchall()}

    async def existing(self, keys: Sequence[Key]) -> set[Key]:
        """Which of these (device_id, ts, seq) keys are already stored."""
        if not keys:
            return set()
        async with self.connection() as conn:
            cur = await conn.execute(
                """
                SELECT m.device_id, m.ts, m.seq
                FROM unnest(%s::text[], %s::timestamptz[], %s::int8[]) AS k(device_id, ts, seq)
                JOIN messages m USING (device_id, ts, seq)
                """,
                ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]),
            )
            return {(r[0], r[1], int(r[2])) for r in await cur.fetchall()}

    async def write_findings(self, batch: StoreBatch) -> None:
        """Store detections and health that arose from time passing, not from a message."""
        try:
            async with self.connection() as conn, conn.transaction():
                await _write_findings(conn, batch)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StorageUnavailable(str(exc).strip() or type(exc).__name__) from exc
        except TimeoutError as exc:
            raise StorageUnavailable(f"no database connection: {exc}") from exc

    async def health_rows(self, device_ids: Sequence[str]) -> list[StoredHealth]:
        async with self.connection() as conn:
            cur = conn.cursor(row_factory=class_row(StoredHealth))
            await cur.execute(
                """
                SELECT device_id, online, since, last_seen, battery_low, tamper, fault, fault_since, stuck
                FROM device_health WHERE device_id = ANY(%s)
                """,
                (list(device_ids),),
            )
            return list(await cur.fetchall())

    async def inactivity_baselines(self) -> dict[str, dict[int, float]]:
        async with self.connection() as conn:
            cur = await conn.execute("SELECT resident_id, local_hour, threshold_s FROM inactivity_baselines")
            out: dict[str, dict[int, float]] = {}
            for resident, hour, threshold in await cur.fetchall():
                out.setdefault(resident, {})[int(hour)] = float(threshold)
            return out

    async def write(self, batch: StoreBatch) -> WriteResult:
        """Store one batch atomically. Raises ``StorageUnavailable`` if the database is away."""
        try:
            async with self.connection() as conn:
                return await _write(conn, batch)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StorageUnavailable(str(exc).strip() or type(exc).__name__) from exc
        except TimeoutError as exc:  # the pool could not hand out a connection in time
            raise StorageUnavailable(f"no database connection: {exc}") from exc


class StorageUnavailable(StorageError):
    """The database cannot be reached right now; retry the same batch later."""


@functools.cache
def _copy_statement(table: str, columns: str) -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(sql.Identifier(table), sql.SQL(columns))


async def _copy(
    conn: AsyncConnection[Any], table: str, columns: str, types: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    async with conn.cursor() as cur, cur.copy(_copy_statement(table, columns)) as copy:
        copy.set_types(list(types))
        for row in rows:
            await copy.write_row(row)


async def _write(conn: AsyncConnection[Any], batch: StoreBatch) -> WriteResult:
    staged = False
    async with conn.transaction():
        stored = len(batch.messages)
        try:
            async with conn.transaction():  # a savepoint
                for name, table in _TABLES.items():
                    rows: list[Any] = getattr(batch, name)
                    if not rows:
                        continue
                    if table.pick is not None:
                        rows = list(map(table.pick, rows))
                    await _copy(conn, name, table.direct_columns, table.direct_types, rows)
        except errors.UniqueViolation:
            staged = True
            stored = await _write_staged(conn, batch)
        if batch.quarantine:
            await _copy(conn, "quarantine", _QUARANTINE.columns, _QUARANTINE.types, batch.quarantine)
        if batch.dead_letters:
            await _copy(conn, "dead_letters", _DEAD_LETTERS.columns, _DEAD_LETTERS.types, batch.dead_letters)
        if batch.findings:
            await _write_findings(conn, batch)
    return WriteResult(
        stored=stored,
        redelivered=len(batch.messages) - stored,
        quarantined=len(batch.quarantine),
        staged=staged,
    )


async def _write_findings(conn: AsyncConnection[Any], batch: StoreBatch) -> None:
    async with conn.cursor() as cur:
        if batch.detections:
            await cur.executemany(
                """
                INSERT INTO detections (key, kind, level, t, subject, facility_id, room_id, resident_id,
                                        device_id, confidence, window_start, window_end, detail)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (key) DO NOTHING
                """,
                batch.detections,
            )
            await cur.execute("SELECT pg_notify('ankang_detections', '')")
        if batch.health:
            # Only for devices still registered: a device deleted meanwhile has no health.
            await cur.executemany(
                """
                INSERT INTO device_health (device_id, online, since, last_seen, battery_low, tamper, fault,
                                           fault_since, stuck, updated_at)
                SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, now()
                WHERE EXISTS (SELECT 1 FROM devices WHERE id = %s)
                ON CONFLICT (device_id) DO UPDATE SET online = EXCLUDED.online, since = EXCLUDED.since,
                    last_seen = greatest(device_health.last_seen, EXCLUDED.last_seen),
                    battery_low = EXCLUDED.battery_low, tamper = EXCLUDED.tamper, fault = EXCLUDED.fault,
                    fault_since = EXCLUDED.fault_since, stuck = EXCLUDED.stuck, updated_at = now()
                -- written from two tasks: an older state never overwrites a newer one
                WHERE EXCLUDED.since >= device_health.since
                """,
                [(*row, row[0]) for row in batch.health],
            )
        if batch.gaps:
            await cur.executemany(
                """
                INSERT INTO inactivity_gaps (resident_id, started, seconds, local_hour)
                VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING
                """,
                batch.gaps,
            )


async def _write_staged(conn: AsyncConnection[Any], batch: StoreBatch) -> int:
    for name in _TABLES:
        await conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            ).format(sql.Identifier(f"stage_{name}"), sql.Identifier(name))
        )
    # readings carry seq in the staging table only, to join them to their message
    await conn.execute("ALTER TABLE stage_readings ADD COLUMN IF NOT EXISTS seq int8")
    for name, table in _TABLES.items():
        rows = getattr(batch, name)
        if rows:
            await _copy(conn, f"stage_{name}", table.columns, table.types, rows)
    cur = await conn.execute(
        """
        WITH new AS (
            INSERT INTO messages (device_id, ts, seq, channel, received_at, worker)
            SELECT DISTINCT ON (device_id, ts, seq) device_id, ts, seq, channel, received_at, worker
            FROM stage_messages
            ON CONFLICT (device_id, ts, seq) DO NOTHING
            RETURNING device_id, ts, seq
        ), r AS (
            INSERT INTO readings (device_id, ts, metric, value)
            SELECT s.device_id, s.ts, s.metric, s.value
            FROM stage_readings s JOIN new USING (device_id, ts, seq)
        ), w AS (
            INSERT INTO waveforms (device_id, ts, seq, rate_hz, n, acc, gyro)
            SELECT s.device_id, s.ts, s.seq, s.rate_hz, s.n, s.acc, s.gyro
            FROM stage_waveforms s JOIN new USING (device_id, ts, seq)
        ), e AS (
            INSERT INTO events (device_id, ts, seq, event, detail)
            SELECT s.device_id, s.ts, s.seq, s.event, s.detail
            FROM stage_events s JOIN new USING (device_id, ts, seq)
        ), st AS (
            INSERT INTO statuses (device_id, ts, seq, state, fw, heartbeat_s)
            SELECT s.device_id, s.ts, s.seq, s.state, s.fw, s.heartbeat_s
            FROM stage_statuses s JOIN new USING (device_id, ts, seq)
        )
        SELECT count(*) FROM new
        """
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


# -- migrations ----------------------------------------------------------------------


def migration_files() -> list[tuple[int, str, str]]:
    """(number, name, sql) of every migration shipped with the hub, in order."""
    found = []
    for entry in resources.files("hub.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    found.sort()
    numbers = [n for n, _, _ in found]
    if numbers != list(range(1, len(numbers) + 1)):
        raise MigrationError(f"migrations must be numbered 0001.. without gaps, found {numbers}")
    return found


async def migrate(url: str) -> list[str]:
    """Apply pending migrations in order, each in its own transaction. Returns their names."""
    applied: list[str] = []
    try:
        conn = await AsyncConnection.connect(url, autocommit=True)
    except psycopg.OperationalError as exc:
        raise StorageUnavailable(f"cannot connect to the database: {exc}") from exc
    async with conn:
        # One migrator at a time, even with several hub workers starting together.
        await conn.execute("SELECT pg_advisory_lock(hashtext('ankang.migrate'))")
        await conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                number integer PRIMARY KEY, name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())
            """
        )
        cur = await conn.execute("SELECT number FROM schema_migrations")
        done = {int(r[0]) for r in await cur.fetchall()}
        for number, name, text in migration_files():
            if number in done:
                continue
            try:
                async with conn.transaction():
                    await conn.execute(text.encode())
                    await conn.execute(
                        "INSERT INTO schema_migrations (number, name) VALUES (%s, %s)", (number, name)
                    )
            except psycopg.Error as exc:
                raise MigrationError(f"migration {name} failed: {exc}") from exc
            log.info("applied migration %s", name)
            applied.append(name)
        await conn.execute("SELECT pg_advisory_unlock(hashtext('ankang.migrate'))")
    return applied
