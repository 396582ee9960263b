"""The fire evaluation harness: one fire, one nuisance, the CFAST plumbing and the docs region."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lab.fire_eval import (
    EPOCH0,
    PREROLL_S,
    CfastCase,
    CfastResult,
    Evaluation,
    Sampler,
    cfast_input,
    read_cfast_csv,
    report,
    sim_fire,
    sim_nuisance,
    summarize,
    t_squared,
    write_region,
)


def test_one_simulated_fire_is_detected_once_and_in_time() -> None:
    full = sim_fire("medium", 1, seed=0, mode="full")
    tele = sim_fire("medium", 1, seed=0, mode="telemetry")
    assert full.onset == EPOCH0 + PREROLL_S
    full_s, tele_s = full.after("alarm"), tele.after("alarm")
    assert full_s is not None and tele_s is not None
    # the detector's own alarm latches at 4 %/m, about 40 s into a medium fire (docs/simulator.md)
    assert 10.0 <= full_s <= 90.0
    assert full_s <= tele_s <= 180.0
    assert full.events and full.events[0][2] == "smoke_alarm"
    assert tele.events == []
    for run in (full, tele):
        assert run.count("alarm") == 1
        assert run.count("prealarm") <= 1
        assert run.early() == 0
    assert full.row()["alarm_causes"] == ["smoke_event"]
    assert "smoke_event" not in tele.row()["alarm_causes"]


def test_one_nuisance_is_a_prealarm_at_most_and_clears() -> None:
    run = sim_nuisance("cooking", 900.0, seed=1, mode="full")
    assert run.count("alarm") == 0
    assert run.count("prealarm") == 1
    assert run.count("clear") == 1
    pre = run.after("prealarm")
    assert pre is not None and 0.0 < pre < 300.0
    summary = summarize([run, sim_fire("fast", 0, seed=1, mode="full")])
    assert summary["nuisances"]["cooking/full"]["fire_alarms"] == 0
    fast = summary["fires"]["sim/fast/full"]
    assert fast["misses"] == 0 and fast["runs"] == 1
    assert fast["alarm_s"]["median"] is not None and fast["alarm_s"]["median"] < 60.0


def test_sampler_reports_on_change_or_every_sixth_sample() -> None:
    sampler = Sampler("smoke-1", np.random.default_rng(0))
    quiet = {"temp_c": 22.0, "smoke_density_pct_m": 0.0, "co_ppm": 0.0}
    reported = [sampler.sample(10.0 * k, quiet)[1] is not None for k in range(12)]
    assert reported == [True, False, False, False, False, False] * 2
    events, reading = sampler.sample(200.0, {**quiet, "smoke_density_pct_m": 6.0})
    assert [e for e, _ in events] == ["smoke_alarm"]
    assert reading is not None and reading.metrics["smoke"] == 1.0


def test_cfast_input_and_output_parsing(tmp_path: Path) -> None:
    case = CfastCase(
        "test", "medium", "fuel", t_squared(0.01172, 100.0, 300.0), 0.02, 0.05, 20_000.0, "open", 300.0
    )
    text = cfast_input(case)
    assert text.startswith("&HEAD") and text.rstrip().endswith("&TAIL /")
    assert text.count("&DEVC") == 6
    assert case.hrr[-1] == (300.0, 100.0)
    # a spreadsheet in CFAST's layout: names, descriptions, locations/ids, units, then rows
    comp = tmp_path / "room_compartments.csv"
    comp.write_text(
        "Time,ULT_1,HGT_1,ULCO_1,LLCO_1\n"
        "Simulation Time,Upper Layer Temperature,Layer Height,CO Upper Layer,CO Lower Layer\n"
        "Time,Bedroom,Bedroom,Bedroom,Bedroom\n"
        "s,C,m,mol_frac,mol_frac\n"
        " 0.0, 22.0, 2.70, 0.0, 0.0\n"
        " 60.0, 60.0, 1.50, 0.000200, 0.000010\n"
    )
    devc = tmp_path / "room_devices.csv"
    devc.write_text(
        "Time,SENST_1,SENSACT_1,SENSOD_2,SENSACT_2\n"
        "Simulation Time,Sensor Temperature,Sensor Activation,Sensor Obscuration,Sensor Activation\n"
        "Time,Element_near,Element_near,Smoke_near,Smoke_near\n"
        "s,C,1=yes,1/m,1=yes\n"
        " 0.0, 22.0, 0.0, 0.0, 0.0\n"
        " 60.0, 50.0, 0.0, 0.5, 1.0\n"
    )
    series = {**read_cfast_csv(comp), **read_cfast_csv(devc)}
    result = CfastResult(case, series[("Time", "Time")], series)
    air = result.air("near", onset=1000.0)
    assert air(900.0) == {"temp_c": 22.0, "smoke_density_pct_m": 0.0, "co_ppm": 0.0}
    end = air(1060.0)
    assert end["temp_c"] == pytest.approx(50.0)
    assert end["smoke_density_pct_m"] == pytest.approx(100.0 * (1.0 - 10**-0.5))  # OD 0.5/m: 68 %/m
    assert end["co_ppm"] == pytest.approx(200.0)  # the detector at 2.675 m is in the upper layer
    assert result.activation("Smoke_near") == 60.0
    assert result.activation("Element_near") is None


def test_docs_region_is_replaced_not_duplicated(tmp_path: Path) -> None:
    runs = [sim_fire("fast", 1, seed=2, mode="full"), sim_nuisance("steam", 900.0, seed=2, mode="full")]
    evaluation = Evaluation(runs, [], "not requested", 1)
    summary = evaluation.summary()
    text = report(evaluation, summary, "img/fire-eval.png", "ankang eval fire --no-cfast")
    assert "| sim | fast | full | 1 | 0 |" in text
    assert "| steam | full | 1 | 0 | 1 | 1 |" in text
    assert "CFAST did not run: not requested" in text
    doc = tmp_path / "detection.md"
    doc.write_text("# Detection\n\nintro\n")
    write_region(doc, text)
    write_region(doc, text.replace("fire-eval.png", "other.png"))
    final = doc.read_text()
    assert final.startswith("# Detection\n\nintro\n")
    assert final.count("<!-- fire-eval:start -->") == 1 and final.count("<!-- fire-eval:end -->") == 1
    assert "other.png" in final and "(img/fire-eval.png)" not in final
