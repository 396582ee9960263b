"""Detectors: small, pure state machines that turn readings into detections.

Each takes timestamped input and an injected clock and knows nothing of MQTT or storage.
``hub.detectors.engine`` routes the live stream to them; docs/detection.md describes the
rules and the measured accuracy.
"""

from hub.detectors.base import KINDS, LEVELS, Detection, Kind, Level

__all__ = ["KINDS", "LEVELS", "Detection", "Kind", "Level"]
