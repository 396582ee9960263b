"""``ankang bench alerts``: from a device's publish to the alarm on a console's live stream.

The whole path runs as it does in a deployment, each part its own process on the same
machine: Mosquitto, PostgreSQL with TimescaleDB, ``ankang hub``, ``ankang alerts`` and
``ankang api``, with an administrator's console reading ``GET /api/v1/alarms/stream``.

1. **Maximum rate.** A quick drain (``IngestBench.drain``, the ``hub-drain`` phase of
   ``ankang bench ingest``) measures how fast the hub ingests, unless ``max_rate`` is given.
2. **Background load.** The ingest benchmark's load generator (``simulators.load``)
   publishes wearable blocks at ``load_fraction`` of that rate for ``duration_s``.
3. **Injections**, spread over the run, each from a device of its own so that each opens a
   new alarm (a repeat of a live alarm would only bump its count, docs/alerts.md):

   - ``fire``: a smoke detector publishes its own ``smoke_alarm`` event, which the fire
     detector alarms on at once. Latency from the wall clock just before the publish.
   - ``fall``: a wearable streams 1 s blocks in real time with a fall in them
     (``WearableModel.schedule_fall``). Latency from the impact's device timestamp, so it
     includes the block still being recorded and the 3 s after the impact that the fall
     detector waits for. Each waveform is first run through the detection engine
     in-process and kept only if it is detected there: this measures latency, not recall
     (docs/detection.md has that).
   - ``offline``: a device announces a short heartbeat in its status, sends one more
     message and falls silent. Latency from its deadline, the last publish plus
     ``heartbeat_s × 1.5`` (``hub.detectors.health.GRACE``).

   The time an ``alarm`` event of that type and device arrives on the stream ends each.

Clocks: every time is the one machine's wall clock (``time.time()`` here, ``now()`` in
PostgreSQL), so the stages of each alarm can be read from the rows it left: the message's
``received_at`` and ``stored_at``, the detection's ``t``, ``detected_at`` and
``alerted_at``. Latencies are never asserted in tests: this is a benchmark.
"""

from lab.alertbench.bench import AlertBench
from lab.alertbench.pieces import AlarmStream, AlertBenchConfig, Injection, fall_plans
from lab.alertbench.plot import plot_alerts

__all__ = ["AlarmStream", "AlertBench", "AlertBenchConfig", "Injection", "fall_plans", "plot_alerts"]
