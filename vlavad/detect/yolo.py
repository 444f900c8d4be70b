"""YOLO object detector (ultralytics), a model-backed alternative to the motion-blob detector.

It sees the same working-resolution frame as every detector (see `vlavad.track.tracking`), keeps the
classes a surveillance scene cares about (COCO person, bicycle, car, motorcycle, bus, truck by
default), and drops boxes smaller than a fraction of the frame area, like the blob detector.
Association over time stays with ByteTrack in `vlavad.track.tracking`: this class only detects.

Unlike the blob detector it also sees objects that never move.

Weights: imported once as safetensors, never read from a file a setting names (see
`vlavad.weights.yolo`).

Identity (cache keys, saved models): the imported file's name and the first 16 hex digits of its
sha256, exactly what release 0.1.0 computed from the `.pt` it loaded, so models fitted and tracks
cached before are still valid once the same file is imported. Both files are checked against the
record's sha256 (remembered per file version, `vlavad.core.fileio.file_sha256`): a swapped file is
refused, with the remedy of importing again.
"""

from __future__ import annotations

import numpy as np
import supervision as sv
from pydantic import Field, field_validator

from vlavad.core.errors import ConfigError
from vlavad.core.registry import Missing
from vlavad.core.schema import Schema
from vlavad.detect.base import DETECTORS, Detector
from vlavad.weights.hub import load_once, package_missing, resolve_device
from vlavad.weights.yolo import (
    _ultralytics_model,
    build_network,
    check_weights_setting,
    find_architecture,
    imported_name,
    is_architecture,
    read_record,
    yolo_dir,
)


class YoloSettings(Schema):
    # Imported weights (`vlavad weights import-yolo`), or an ultralytics architecture ("yolo11n.yaml": random weights)
    weights: str = "yolo11n"
    classes: str = "person,bicycle,car,motorcycle,bus,truck"  # class names or ids, comma-separated
    conf: float = Field(0.5, ge=0, le=1)
    iou: float = Field(0.3, ge=0, le=1)  # NMS IoU
    min_area_frac: float = Field(0.0012, ge=0, le=1)  # minimum box area as a fraction of the frame area
    imgsz: int = Field(640, ge=32, le=4096)  # YOLO's inference size (the working frame is letterboxed to it)

    _weights_name = field_validator("weights")(check_weights_setting)


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
        missing = package_missing("ultralytics", "hub")
        if missing or is_architecture(settings.weights):
            if not missing and find_architecture(settings.weights) is None:
                return Missing(f"{settings.weights!r} is not an architecture that ultralytics ships", "Use one it does, e.g. yolo11n.yaml")
            return missing
        name = imported_name(settings.weights)
        if (yolo_dir() / f"{name}.json").is_file() and (yolo_dir() / f"{name}.safetensors").is_file():
            return None
        return Missing(
            f"YOLO weights {name!r} have not been imported into {yolo_dir()}",
            f"Import trusted ultralytics weights once: `vlavad weights import-yolo {name}.pt` "
            f"(with internet, `yolo predict model={name}.pt` downloads the file), or set detect.yolo.weights to an imported name",
        )

    def identity(self) -> dict:
        if is_architecture(self.weights):
            weights, digest = self.weights, "random-init"  # a new random network on every load
        else:
            record = read_record(imported_name(self.weights))
            weights, digest = record.source, record.source_sha256[:16]
        return {
            "detector": self.name,
            "weights": weights,
            "weights_sha256": digest,
            "classes": self.classes,
            "conf": self.conf,
            "iou": self.iou,
            "min_area_frac": self.min_area_frac,
            "imgsz": self.imgsz,
        }

    def _model(self):
        device = resolve_device(self.requested_device)
        key = (
            self.weights if is_architecture(self.weights) else (imported_name(self.weights), read_record(imported_name(self.weights)).weights_sha256)
        )
        return load_once(("yolo", key, device), lambda: _ultralytics_model(build_network(self.weights))), device

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
