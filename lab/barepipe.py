"""The bare pipe: the least a subscriber can do to get wearable messages into the hypertables.

It is the benchmark's yardstick for the hub, on the same machine and in the same run: a
paho subscriber with the same persistent QoS 1 session and acknowledgement after commit,
that parses only what the tables need (``ts``, ``seq`` and the samples) and COPYs batches
into ``messages``, ``waveforms`` and ``readings``, with no validation, quarantine, deduplication or
detection. Run it as ``python -m lab.barepipe MQTT_URL DATABASE_URL CLIENT_ID``.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from datetime import UTC, datetime
from types import FrameType

import numpy as np
import orjson
import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices.mqtt import MqttEndpoint


def main(argv: list[str]) -> int:
    mqtt_url, database_url, client_id = argv[1], argv[2], argv[3]
    endpoint = MqttEndpoint.from_url(mqtt_url)
    buffer: list[paho.MQTTMessage] = []
    lock = threading.Lock()
    stop = threading.Event()

    def on_connect(c: paho.Client, *_a: object) -> None:
        c.subscribe("ankang/v1/+/telemetry", qos=1)

    def on_message(_c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        with lock:
            buffer.append(msg)

    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5, manual_ack=True
    )
    client.on_connect = on_connect
    client.on_message = on_message
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = 20_000
    endpoint.configure(client)
    client.connect(endpoint.host, endpoint.port, clean_start=False, properties=props)
    client.loop_start()

    def on_term(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    with psycopg.connect(database_url) as conn:
        while not stop.is_set():
            with lock:
                batch, buffer[:] = list(buffer), []
            if not batch:
                time.sleep(0.005)
                continue
            now = datetime.now(UTC)
            with conn.cursor() as cur:
                rows = []
                readings: list[tuple[str, datetime, str, float]] = []
                for m in batch:
                    obj = orjson.loads(m.payload)
                    ts = datetime.fromtimestamp(obj["ts"] / 1000, UTC)
                    device = m.topic.split("/")[2]
                    acc = np.asarray(obj["acc_g"], dtype="<f4")
                    rows.append((device, ts, obj["seq"], obj["rate_hz"], len(acc), acc.tobytes()))
                    readings.extend((device, ts, k, float(v)) for k, v in obj.get("metrics", {}).items())
                with cur.copy(
                    "COPY messages (device_id, ts, seq, channel, received_at) FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(["text", "timestamptz", "int8", "text", "timestamptz"])
                    for r in rows:
                        copy.write_row((r[0], r[1], r[2], "telemetry", now))
                with cur.copy(
                    "COPY waveforms (device_id, ts, seq, rate_hz, n, acc) FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(["text", "timestamptz", "int8", "float4", "int4", "bytea"])
                    for r in rows:
                        copy.write_row(r)
                with cur.copy(
                    "COPY readings (device_id, ts, metric, value) FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(["text", "timestamptz", "text", "float8"])
                    for reading in readings:
                        copy.write_row(reading)
            conn.commit()
            for m in batch:
                client.ack(m.mid, 1)
    client.disconnect()
    client.loop_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
