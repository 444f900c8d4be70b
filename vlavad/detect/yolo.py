"""YOLO object detector (ultralytics), a model-backed alternative to the motion-blob detector.

It sees the same working-resolution frame as every detector (see `vlavad.track`), keeps the
classes a surveillance scene cares about (COCO person, bicycle, car, motorcycle, bus, truck by
default), and drops boxes smaller than a fraction of the frame area, like the blob detector.
Association over time stays with ByteTrack in `vlavad.track`: this class only detects.

Unlike the blob detector it also sees objects that never move. Weights are a local file: with
`YOLO_OFFLINE=1` ultralytics cannot download, and a missing file is reported (`missing`) before
any video is read.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import supervision as sv
from pydantic import Field

from ..errors import ConfigError
from ..hub import load_once, package_missing, resolve_device
from ..registry import Missing
from ..schema import Schema
from .base import DETECTORS, Detector

APP_DIR = Path(__file__).resolve().parents[2]


class YoloSettings(Schema):
    weights: str = "yolo11n.pt"  # a path, or a file name looked up in the working and app folders
    classes: str = "person,bicycle,car,motorcycle,bus,truck"  # class names or ids, comma-separated
    conf: float = Field(0.5, ge=0, le=1)
    iou: float = Field(0.3, ge=0, le=1)  # NMS IoU
    min_area_frac: float = Field(0.0012, ge=0, le=1)  # minimum box area as a fraction of the frame area
    imgsz: int = Field(640, ge=32, le=4096)  # YOLO's inference size (the working frame is letterboxed to it)


def find_weights(weights: str) -> Path | None:
    """The weights file: the path as given, else the name in the working folder or the app's
    folder. A `.yaml` model description builds a randomly initialised network (tests,
    benchmarks) and is accepted as is."""
    path = Path(weights).expanduser()
    if path.suffix in (".yaml", ".yml"):
        return path
    for candidate in (path, Path.cwd() / path.name, APP_DIR / path.name):
        if candidate.is_file():
            return candidate.resolve()
    return None


@lru_cache(maxsize=16)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    """Short content hash of a weights file (cached per file version): two files named
    yolo11n.pt with different weights must not share cached tracks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


@DETECTORS.register
class YoloDetector(Detector):
    name = "yolo"
    tier = "hub"
    Settings = YoloSettings

    def __init__(self, settings: YoloSettings = YoloSettings(), device: str = "auto"):
        self.weights = settings.weights
        self.classes = [c.strip() for c in settings.classes.split(",") if c.strip()]
        self.conf, self.iou, self.min_area_frac, self.imgsz = settings.conf, settings.iou, settings.min_area_frac, settings.imgsz
        self.requested_device = device

    @classmethod
    def create(cls, settings: YoloSettings, device: str) -> YoloDetector:
        return cls(settings, device)

    @classmethod
    def missing(cls, settings: YoloSettings) -> Missing | None:
        if find_weights(settings.weights) is not None:
            return package_missing("ultralytics")
        return Missing(
            f"YOLO weights {settings.weights!r} were not found",
            f"Put {Path(settings.weights).name} next to the app (or in the working folder) or pass --set detect.yolo.weights=PATH; "
            "with internet, `yolo predict model=yolo11n.pt` downloads it.",
        )

    def _weights_path(self) -> Path:
        path = find_weights(self.weights)
        if path is None:
            raise ConfigError(f"YOLO weights {self.weights!r} not found; put the file next to the app or pass --set detect.yolo.weights=PATH.")
        return path

    def identity(self) -> dict:
        path = self._weights_path()
        if path.suffix in (".yaml", ".yml"):
            digest = "random-init"  # a new random network on every load
        else:
            stat = path.stat()
            digest = _file_digest(str(path), stat.st_size, stat.st_mtime_ns)
        return {
            "detector": self.name,
            "weights": path.name,
            "weights_sha256": digest,
            "classes": self.classes,
            "conf": self.conf,
            "iou": self.iou,
            "min_area_frac": self.min_area_frac,
            "imgsz": self.imgsz,
        }

    def _model(self):
        device = resolve_device(self.requested_device)
        weights = str(self._weights_path())

        def load():
            from ultralytics import YOLO

            return YOLO(weights)

        return load_once(("yolo", weights, device), load), device

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(str(name) for name in self._model()[0].names.values())

    def class_ids(self, names: dict[int, str]) -> list[int]:
        """The configured classes as ids of this model (names, or ids written as numbers)."""
        by_name = {str(n).lower(): i for i, n in names.items()}
        ids = []
        for c in self.classes:
            if c.isdigit():
                ids.append(int(c))
            elif c.lower() in by_name:
                ids.append(by_name[c.lower()])
            else:
                raise ConfigError(f"YOLO class {c!r} is not one of this model's classes ({', '.join(list(by_name)[:10])}, ...).")
        return ids

    def detect(self, frame_bgr: np.ndarray, frame_gray: np.ndarray) -> sv.Detections:
        import torch

        model, device = self._model()
        # On the CPU, ultralytics sets torch's thread count to (cores - 1) for every predict call;
        # left so, everything after it (the S3M's training, a VLM on the CPU) runs on fewer
        # threads: one on a 2-core machine.
        threads = torch.get_num_threads()
        try:
            result = model.predict(
                frame_bgr,
                conf=self.conf,
                iou=self.iou,
                classes=self.class_ids(model.names),
                imgsz=self.imgsz,
                device=device,
                verbose=False,
            )[0]
        finally:
            torch.set_num_threads(threads)
        return self.filter(sv.Detections.from_ultralytics(result), frame_bgr.shape[:2], model.names)

    def filter(self, detections: sv.Detections, frame_shape: tuple[int, int], names: dict[int, str]) -> sv.Detections:
        """Keeps the configured classes (ultralytics already filtered; this makes it a
        guarantee) and boxes of at least `min_area_frac` of the frame area."""
        if len(detections) == 0:
            return detections
        height, width = frame_shape
        keep = np.isin(detections.class_id, self.class_ids(names)) & (detections.area >= self.min_area_frac * height * width)
        return detections[keep]
