"""Prometheus metrics of the hub, and the small operations HTTP server (/healthz, /metrics)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

if TYPE_CHECKING:
    from hub.ingest import Prepared
    from hub.storage import WriteResult

_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class HubMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages = Counter(
            "ankang_ingest_messages",
            "Messages handled by ingest, by outcome",
            ["outcome"],
            registry=r,
        )
        self.quarantine = Counter(
            "ankang_quarantine", "Messages quarantined, by kind of reason", ["kind"], registry=r
        )
        self.dead_letters = Counter(
            "ankang_dead_letters",
            "Messages acknowledged into dead_letters after failing every try, by stage",
            ["stage"],
            registry=r,
        )
        self.samples = Counter("ankang_ingest_samples", "Waveform samples stored", registry=r)
        self.gaps = Counter(
            "ankang_seq_gaps", "Sequence numbers skipped by devices (lost upstream)", registry=r
        )
        self.lag = Histogram(
            "ankang_ingest_lag_seconds",
            "From the hub receiving a message to its commit",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.device_lag = Histogram(
            "ankang_device_lag_seconds",
            "From the device timestamp to the commit (includes device clock error)",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "ankang_ingest_batch_size",
            "Messages per committed batch",
            buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10000, 20000),
            registry=r,
        )
        self.queue_depth = Gauge(
            "ankang_ingest_queue_depth", "Messages received, not yet committed", registry=r
        )
        self.lane_lag = Gauge(
            "ankang_lane_lag_seconds",
            "How far behind the lane is: the age, by the devices' clocks, of what it commits now"
            " (0 with nothing waiting)",
            ["lane"],
            registry=r,
        )
        self.lane_queue_depth = Gauge(
            "ankang_lane_queue_depth",
            "Messages received in the lane, not yet committed",
            ["lane"],
            registry=r,
        )
        self.db_up = Gauge("ankang_database_up", "1 while the database accepts writes", registry=r)
        self.mqtt_up = Gauge("ankang_mqtt_connected", "1 while connected to the broker", registry=r)
        self.job_runs = Counter("ankang_job_runs", "Scheduled job runs", ["job", "result"], registry=r)
        self.stage_seconds = Counter(
            "ankang_stage_seconds",
            "Time spent in each ingest stage (decode runs in a worker thread)",
            ["stage"],
            registry=r,
        )
        self.db_up.set(1)

    def record(self, prepared: Prepared, result: WriteResult) -> None:
        now = time.time()
        self.messages.labels("stored").inc(result.stored)
        self.messages.labels("redelivered").inc(result.redelivered + prepared.redelivered)
        self.messages.labels("quarantined").inc(result.quarantined)
        self.messages.labels("foreign").inc(prepared.foreign)
        self.gaps.inc(prepared.gaps)
        self.batch_size.observe(len(prepared.inbound))
        for q in prepared.quarantined:
            self.quarantine.labels(q.kind.value).inc()
        for d in prepared.dead:
            self.dead_letters.labels(d.stage).inc()
        samples = 0
        for raw, msg in prepared.accepted:
            self.lag.observe(max(0.0, now - raw.received_at))
            self.device_lag.observe(max(0.0, now - msg.ts.timestamp()))
            samples += getattr(msg, "n_samples", 0)
        self.samples.inc(samples)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class OpsServer:
    """Serves /healthz (JSON, 200 or 503) and /metrics (Prometheus) from a thread."""

    def __init__(
        self, host: str, port: int, metrics: HubMetrics, health: Callable[[], dict[str, Any]]
    ) -> None:
        self._host = host
        self._port = port
        self._metrics_app = make_wsgi_app(metrics.registry)
        self._health = health
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_port if self._server else self._port

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return self._metrics_app(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            status = self._health()
            code = "200 OK" if status.get("ok") else "503 Service Unavailable"
            start_response(code, [("Content-Type", "application/json")])
            return [orjson.dumps(status)]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    async def __aenter__(self) -> Self:
        if self._port == 0:
            return self
        self._server = make_server(self._host, self._port, self._app, handler_class=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="hub.ops-http", daemon=True)
        self._thread.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
