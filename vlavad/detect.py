"""Object detection: the `Detector` interface and the offline motion-blob detector.

A detector sees frames at the pipeline's working resolution (every frame is resized to a fixed
height first, so thresholds and kernel sizes mean the same thing at every input resolution) and
returns boxes in those working coordinates as `supervision.Detections`.

`MotionBlobDetector` needs no weights: it subtracts a background model (the per-pixel median of
frames sampled across the whole video, then slowly updated) and turns the connected foreground
regions into boxes. It finds whatever moves, which on a fixed surveillance camera is what VAD
benchmarks care about; it cannot see an object that never moves.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Iterable

import cv2
import numpy as np
import supervision as sv


class Detector(ABC):
    """Finds objects in one frame at a time. `begin` is called once per video."""

    name: str = "detector"

    def begin(self, sample_frames: Iterable[np.ndarray]) -> None:
        """Resets per-video state. `sample_frames` are working-resolution grey frames spread
        over the video, for detectors that model the background; others may ignore them."""

    @abstractmethod
    def detect(self, frame_bgr: np.ndarray, frame_gray: np.ndarray) -> sv.Detections:
        """Boxes (xyxy, working pixels) with confidences for one working-resolution frame."""

    def foreground(self) -> np.ndarray | None:
        """The last frame's foreground mask, when the detector has one (helps motion sampling)."""
        return None

    @abstractmethod
    def identity(self) -> dict:
        """Name and settings: enters cache keys and saved models."""


@dataclass(frozen=True)
class BlobSettings:
    """Settings of the motion-blob detector, all relative to the working frame height."""

    background_samples: int = 50
    background_update: float = 0.02  # per-frame blend rate of background pixels (lighting drift)
    min_threshold: float = 12.0  # grey levels; raised automatically on noisy (lossy) video
    noise_factor: float = 4.0  # threshold = max(min_threshold, noise_factor * noise sigma)
    close_frac: float = 0.02  # closing kernel, fraction of frame height: joins a body's parts
    min_area_frac: float = 0.0012  # minimum box area as a fraction of the frame area
    min_height_frac: float = 0.04  # minimum box height as a fraction of frame height
    max_area_frac: float = 0.35  # larger blobs are lighting changes, not objects


class MotionBlobDetector(Detector):
    """Background subtraction + connected components: a weight-free detector."""

    name = "motion-blobs"

    def __init__(self, settings: BlobSettings = BlobSettings()):
        self.settings = settings
        self._background: np.ndarray | None = None
        self._mask: np.ndarray | None = None

    def identity(self) -> dict:
        return {"detector": self.name, **asdict(self.settings)}

    def begin(self, sample_frames: Iterable[np.ndarray]) -> None:
        samples = list(sample_frames)[: self.settings.background_samples]
        # The median of frames spread over the whole clip is the empty scene as long as no
        # pixel is covered by objects in most samples; it needs no warm-up, unlike MOG2, so
        # objects present from the first frame are found.
        self._background = np.median(np.stack(samples), axis=0).astype(np.float32) if samples else None
        self._mask = None

    def detect(self, frame_bgr: np.ndarray, frame_gray: np.ndarray) -> sv.Detections:
        s = self.settings
        gray = frame_gray.astype(np.float32)
        if self._background is None:
            self._background = gray.copy()
        diff = np.abs(gray - self._background)
        # Robust noise estimate (median absolute difference) so that lossy, noisy video does
        # not turn into a snowstorm of blobs. Every other pixel of every other row is plenty for
        # a median and makes it ten times cheaper (it was a tenth of the scoring time).
        noise_sigma = 1.4826 * float(np.median(diff[::2, ::2]))
        threshold = max(s.min_threshold, s.noise_factor * noise_sigma)
        mask = (diff > threshold).astype(np.uint8)

        height, width = mask.shape
        k = max(3, int(round(s.close_frac * height)) | 1)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
        self._mask = mask

        # Multiplying by the 0/1 background mask does what boolean indexing would, 3x faster.
        self._background += s.background_update * (gray - self._background) * (mask == 0)

        count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        boxes, confidences = [], []
        frame_area = float(height * width)
        for x, y, w, h, area in stats[1:count]:
            box_area = float(w * h)
            if box_area < s.min_area_frac * frame_area or h < s.min_height_frac * height:
                continue
            if box_area > s.max_area_frac * frame_area:
                continue
            boxes.append((x, y, x + w, y + h))
            # Solid blobs are more object-like than sparse speckle; ByteTrack uses this to
            # associate confident boxes first.
            confidences.append(min(1.0, 0.5 + area / box_area))
        if not boxes:
            return sv.Detections.empty()
        return sv.Detections(
            xyxy=np.asarray(boxes, dtype=np.float32),
            confidence=np.asarray(confidences, dtype=np.float32),
            class_id=np.zeros(len(boxes), dtype=int),
        )

    def foreground(self) -> np.ndarray | None:
        return self._mask
