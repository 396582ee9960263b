"""``ankang bench alerts`` end to end at a tiny size: every injection reaches the console's stream.

A smoke test of the machinery (drain, load, injector, hub, alerts, API, SSE client and the
stage breakdown), not of the timings: those are figures for docs/benchmarks.md.
"""

from __future__ import annotations

from lab.alertbench import AlertBench, AlertBenchConfig, plot_alerts


def test_every_injected_alarm_is_seen_on_the_stream(broker, database, tmp_path):
    cfg = AlertBenchConfig(
        background_devices=20,
        drain_messages=1000,  # the quick drain measures the maximum rate
        load_fraction=0.05,  # and a trickle of it keeps the test light on a shared machine
        duration_s=20.0,
        warmup_s=2.0,
        tail_s=6.0,
        settle_s=15.0,
        fires=3,
        falls=2,
        offline=2,
        offline_heartbeat_s=2,
        connections=1,
        mqtt_url=broker.url,
        database_url=database,
    )
    with AlertBench(cfg) as bench:
        summary = bench.run()

    assert summary["max_rate_from"] == "drain"
    assert summary["drain"]["stored"] == 1000
    assert summary["max_rate_msgs_per_s"] > 0
    assert summary["background"]["sent"] > 0
    assert summary["background"]["distinct"] == summary["background"]["sent"], "background load lost"
    for kind, planned in (("fire", 3), ("fall", 2), ("offline", 2)):
        row = summary["kinds"][kind]
        assert row["injected"] == planned, kind
        assert row["seen"] == planned and row["missing"] == 0, (kind, row)
        assert len(row["latencies_s"]) == planned
        assert all(latency > 0 for latency in row["latencies_s"]), (kind, row["latencies_s"])
        assert row["stages"], f"no stage breakdown for {kind}"
    # a fall is reported only after the 3 s the detector waits past the impact
    assert min(summary["kinds"]["fall"]["latencies_s"]) > 3.0
    assert summary["kinds"]["fire"]["met"] in (True, False)  # judged, whatever the machine did
    assert summary["kinds"]["fall"]["met"] is None  # no target for falls
    assert summary["stream"]["alarm_events"] >= 7
    chart = plot_alerts(summary, tmp_path / "alerts.png")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
