"""Backend choice: which detector, describer and text encoder a run uses.

The offline backends (motion blobs, motion describer, hashing encoder) need no download. The
model-backed ones (YOLO + ByteTrack, BLIP-2 or another VLM, CLIP text) are imported only when
asked for, so importing `vlavad` never loads torch models.
"""

from __future__ import annotations

from .config import Settings
from .describe import Describer, MotionDescriber
from .detect import Detector, MotionBlobDetector
from .embed import HashingTextEncoder, TextEncoder
from .errors import ConfigError

DETECTORS = ("blobs",)
DESCRIBERS = ("motion",)
ENCODERS = ("hashing",)


def make_detector(settings: Settings) -> Detector:
    if settings.detector == "blobs":
        return MotionBlobDetector(settings.blobs)
    raise ConfigError(f"Unknown detector {settings.detector!r}; choose one of: {', '.join(DETECTORS)}")


def make_describer(settings: Settings) -> Describer:
    if settings.describer == "motion":
        return MotionDescriber(smooth_s=settings.motion_smooth_s)
    raise ConfigError(f"Unknown describer {settings.describer!r}; choose one of: {', '.join(DESCRIBERS)}")


def make_encoder(settings: Settings) -> TextEncoder:
    if settings.encoder == "hashing":
        return HashingTextEncoder()
    raise ConfigError(f"Unknown text encoder {settings.encoder!r}; choose one of: {', '.join(ENCODERS)}")


def describe_backends(detector: Detector, describer: Describer, encoder: TextEncoder) -> dict:
    """What produced a result, for every saved model and result file."""
    return {
        "detector": detector.identity(),
        "describer": describer.identity(),
        "encoder": encoder.identity(),
        "describer_is_vlm": describer.is_vlm,
    }
