"""The ingest benchmark's accounting: injected loss is reported, duplicates are not stored twice."""

from __future__ import annotations

from lab.bench import BenchConfig, IngestBench
from lab.plots import plot_ingest


def test_bench_reports_known_loss_and_no_duplicates(broker, own_pg, tmp_path):
    cfg = BenchConfig(
        devices=50,
        rate=400.0,
        duration_s=3.0,
        drain_messages=2000,
        connections=2,
        inject_loss=1,
        inject_duplicates=2,
        phases=("bare-drain", "hub-drain", "sustained"),
        mqtt_url=broker.url,
        database_url=own_pg.url,
    )
    with IngestBench(cfg) as bench:
        summary = bench.run()
    sustained = summary["phases"]["sustained"]
    assert sustained["lost"] == 1, "the message skipped on purpose must show up as lost"
    assert sustained["duplicated"] == 0, "messages sent twice are stored once"
    assert sustained["stored"] == sustained["messages"] - 1
    assert summary["lost"] == 1
    for drain in ("bare-drain", "hub-drain"):
        assert summary["phases"][drain]["stored"] == 2000
        assert summary["phases"][drain]["lost"] == 0
    assert summary["msgs_per_s"] > 0
    assert summary["bare_msgs_per_s"] > 0
    assert summary["ratio"] == round(
        summary["phases"]["hub-drain"]["rate"] / summary["phases"]["bare-drain"]["rate"], 3
    )
    assert set(summary) >= {
        "msgs_per_s",
        "samples_per_s",
        "lost",
        "duplicated",
        "p99_lag_s",
        "bare_msgs_per_s",
        "ratio",
    }
    chart = plot_ingest(summary, tmp_path / "bench.png")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_detector_bench_reports_each_kind_and_finds_the_injected_falls():
    from lab.detectbench import run_detector_bench

    summary = run_detector_bench(devices=10, seconds=40)
    kinds = summary["kinds"]
    assert set(kinds) == {"wearable", "bed_sensor", "smoke_detector"}
    assert kinds["wearable"]["messages"] == 400 and kinds["wearable"]["us_per_message"] > 0
    assert kinds["wearable"]["detections"] >= 1  # wearer 0 falls
