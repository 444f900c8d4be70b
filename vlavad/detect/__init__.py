"""Detection: which objects are in a frame. One backend per file, registered in `DETECTORS`.

- `blobs` (weight-free): background subtraction + connected components;
- `yolo` (hub): ultralytics YOLO11 on COCO classes.
"""

from . import blobs, yolo  # noqa: F401  (importing a backend's module registers it)
from .base import DETECTORS, Detector

__all__ = ["DETECTORS", "Detector"]
