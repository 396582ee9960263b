"""A lean load generator for benchmarks: many wearables, few connections, exact accounting.

Signals come from ``WearableModel`` (one block of daily living per device, computed once and
rotated), and each message is assembled by splicing ``ts`` and ``seq`` into the
pre-encoded block, so the generator spends its CPU on MQTT rather than on physics. ``ts``
is the wall-clock time of publishing, which is what ingest lag is measured from.

The ledger records what the generator *claims* to have sent. ``inject_loss`` skips that
many messages without telling the ledger, so a benchmark can prove that it notices loss;
``inject_duplicates`` sends that many messages twice, which the hub must store once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from devices.mqtt import BufferedClient, MqttEndpoint
from simulators.signals import WearableModel


@dataclass(frozen=True)
class LoadConfig:
    endpoint: MqttEndpoint
    device_ids: tuple[str, ...]
    rate: float | None  # messages per second in total; None publishes as fast as the broker takes them
    duration_s: float | None = None
    count: int | None = None  # total messages; alternative to duration
    connections: int = 4
    samples: int = 50
    rate_hz: int = 50
    inject_loss: int = 0
    inject_duplicates: int = 0
    seed: int = 1
    client_prefix: str = "load"
    max_inflight: int = 1000
    # "wall": ts is the wall clock at publishing (live phases measure lag from it);
    # "blocks": each device's ts advances by one block per message, as a real wearable's
    # does, for backlogs published faster than real time
    clock: str = "wall"


@dataclass
class LoadResult:
    sent: int = 0  # messages the ledger says were sent (including the ones dropped on purpose)
    published: int = 0  # PUBLISH packets handed to paho
    acked: int = 0
    started: float = 0.0
    finished: float = 0.0
    per_device: dict[str, int] = field(default_factory=dict)  # highest seq claimed per device
    dropped: list[tuple[str, int]] = field(default_factory=list)
    duplicated: list[tuple[str, int]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "published": self.published,
            "acked": self.acked,
            "started": self.started,
            "finished": self.finished,
            "per_device": self.per_device,
            "dropped": self.dropped,
            "duplicated": self.duplicated,
        }


def _blocks(cfg: LoadConfig, n: int = 64) -> list[bytes]:
    rng = np.random.default_rng(cfg.seed)
    model = WearableModel("waist", rng, cfg.rate_hz)
    seconds = cfg.samples / cfg.rate_hz
    out = []
    for i in range(n):
        block = np.round(model.block(i * seconds, seconds), 3)
        out.append(orjson.dumps(block, option=orjson.OPT_SERIALIZE_NUMPY))
    return out


def _pump(clients: list[paho.Client]) -> None:
    """Read PUBACKs and flush pending writes on every connection, without blocking."""
    for c in clients:
        c.loop_read()
        if c.want_write():
            c.loop_write()


def run_load(cfg: LoadConfig, progress: Callable[[int, int], None] | None = None) -> LoadResult:
    """Publish until the duration or count is reached, then wait for every PUBACK.

    The connections are driven from this one thread (no paho network threads), so a
    publish is written to the socket at once and PUBACKs are read in 64 KiB chunks.
    """
    blocks = _blocks(cfg)
    result = LoadResult()
    clients: list[paho.Client] = []

    def on_publish(*_args: Any) -> None:
        result.acked += 1

    for k in range(cfg.connections):
        conn = BufferedClient(
            CallbackAPIVersion.VERSION2, client_id=f"{cfg.client_prefix}-{k}", protocol=paho.MQTTv5
        )
        cfg.endpoint.configure(conn)
        conn.max_inflight_messages_set(cfg.max_inflight)
        conn.max_queued_messages_set(cfg.max_inflight * 4)
        conn.on_publish = on_publish
        conn.connect(cfg.endpoint.host, cfg.endpoint.port, keepalive=60)
        clients.append(conn)
    deadline = time.monotonic() + 10
    while not all(c.is_connected() for c in clients) and time.monotonic() < deadline:
        _pump(clients)
        time.sleep(0.005)
    seqs = dict.fromkeys(cfg.device_ids, 0)
    ids = list(cfg.device_ids)
    topics = {d: f"ankang/v1/{d}/telemetry" for d in ids}
    n_dev = len(ids)
    total = cfg.count
    loss_left, dup_left = cfg.inject_loss, cfg.inject_duplicates
    # spread the injected faults over the run rather than bunching them at the start
    planned = total or int((cfg.rate or 1000) * (cfg.duration_s or 1))
    fault_every = max(1, planned // max(1, loss_left + dup_left + 1))
    result.started = time.time()
    block_ms = round(1000 * cfg.samples / cfg.rate_hz)
    block_clock0 = int(result.started * 1000) - block_ms * 1000  # a backlog of up to 1000 blocks a device
    t0 = time.monotonic()
    last_misc = t0
    i = 0
    while True:
        now = time.monotonic()
        elapsed = now - t0
        if total is not None and i >= total:
            break
        if total is None and cfg.duration_s is not None and elapsed >= cfg.duration_s:
            break
        if now - last_misc >= 1.0:
            for c in clients:
                c.loop_misc()
            last_misc = now
        due = (int(cfg.rate * elapsed) + 1 - i) if cfg.rate else 200
        if due <= 0:
            _pump(clients)
            time.sleep(0.001)
            continue
        for _ in range(min(due, 200)):
            if total is not None and i >= total:
                break
            dev = ids[i % n_dev]
            seq = seqs[dev] + 1
            seqs[dev] = seq
            payload = b'{"ts":%d,"seq":%d,"rate_hz":%d,"acc_g":%b,"metrics":{"hr_bpm":72}}' % (
                block_clock0 + seq * block_ms if cfg.clock == "blocks" else int(time.time() * 1000),
                seq,
                cfg.rate_hz,
                blocks[(i // n_dev + i) % len(blocks)],
            )
            client = clients[i % len(clients)]
            i += 1
            result.sent += 1
            if loss_left and i % fault_every == 0:
                loss_left -= 1
                result.dropped.append((dev, seq))
                continue
            copies = 1
            if dup_left and i % fault_every == fault_every // 2:
                dup_left -= 1
                copies = 2
                result.duplicated.append((dev, seq))
            for _ in range(copies):
                while client.publish(topics[dev], payload, qos=1).rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
                    _pump(clients)  # paho's queue is full: wait for the broker's PUBACKs
                    time.sleep(0.0005)
                result.published += 1
        _pump(clients)
        if progress is not None:
            progress(result.sent, result.acked)
    deadline = time.monotonic() + 120
    while result.acked < result.published and time.monotonic() < deadline:
        _pump(clients)
        if progress is not None:
            progress(result.sent, result.acked)
        time.sleep(0.002)
    result.finished = time.time()
    for c in clients:
        c.disconnect()
        _pump([c])
    result.per_device = {d: s for d, s in seqs.items() if s}
    return result
