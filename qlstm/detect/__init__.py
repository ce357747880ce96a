"""Quench-precursor detection from prediction residuals (``qlstm detect``; docs/detect.md).

* :mod:`.labels` - anomaly windows from a labels file, the recording or its quench markers;
* :mod:`.alarm` - the alarm rule in float64 and bit-exact in fixed point (one rule, two arithmetics);
* :mod:`.evaluate` - firings, detections, lead times, false alarms per day, calibration, ROC/AUC;
* :mod:`.run` - :func:`run` -> :class:`DetectionResult` (``to_json()`` is ``detection.json``);
* :mod:`.plots`, :mod:`.cli`.
"""

from qlstm.detect.alarm import AlarmRule
from qlstm.detect.run import DetectConfig, DetectionResult, write
from qlstm.detect.run import detect as run

__all__ = ["AlarmRule", "DetectConfig", "DetectionResult", "run", "write"]
